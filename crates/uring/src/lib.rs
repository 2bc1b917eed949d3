//! socklab-uring (not written yet).
