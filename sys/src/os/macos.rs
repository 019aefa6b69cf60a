//! macOS: the portable fallbacks (`os/portable.rs`), and kqueue's pipe free
//! space.

pub use crate::kqueue::{pipe_free_space, pipe_room};
pub use crate::portable::*;
