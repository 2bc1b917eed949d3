//! socklab-async (not written yet).
