//! socklab-loadgen (not written yet).
