//! socklab-nonblocking (not written yet).
