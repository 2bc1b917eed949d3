//! socklab-prefork (not written yet).
