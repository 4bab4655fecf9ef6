"""Many initializations of one problem: the methods registry, host-side checks, vmapped or sequential batches across devices, refilled solver slots."""
