//! (module being written; see issue 2)
