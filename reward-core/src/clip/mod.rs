//! The CLIP verifier on the CPU (issue 3; being written).
