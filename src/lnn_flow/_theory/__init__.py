"""The notes' results as checks along solved trajectories (behind `lnn_flow.theory` and `lnn_flow.tensor`)."""
