"""Solving any flow system: the declared system interface, the solve options, the controller and stops, the steppers (RKC2, the switching `solver="auto"`), one `solve` and its `FlowSolution`."""
