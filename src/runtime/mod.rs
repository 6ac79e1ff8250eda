//! Container runtimes behind one trait: docker (bollard), process, and sim.
