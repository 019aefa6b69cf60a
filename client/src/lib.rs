//! sendfiled-client: everything a program needs to use a running sendfiled
//! daemon, and nothing of the server. Rule: this crate may hold the wire
//! format, the client API and the system calls a client makes; it never
//! depends on `mio` or on the server crates (`sendfiled-core` depends on it,
//! not the other way round).
//!
//! - [`protocol`]: the request/response wire format, limits, encode/decode;
//! - [`messages`]: whole messages out of what a status pipe gave;
//! - [`client`]: the blocking client API ([`Client`], [`StatusChannel`],
//!   [`DataChannel`], [`spawn`]);
#![cfg_attr(
    feature = "tokio",
    doc = "- `tokio_client` (feature `tokio`): the async API, [`AsyncClient`] and its futures;"
)]
#![cfg_attr(
    not(feature = "tokio"),
    doc = "- `tokio_client` (feature `tokio`, not built here): the async API, `AsyncClient` and its futures;"
)]
//! - [`sys`]: the thin system-call wrappers the client uses (pipes,
//!   descriptor passing, readiness waits).
//!
//! ```no_run
//! use sendfiled_client::{Client, Range};
//! use std::io::Read;
//!
//! # fn main() -> std::io::Result<()> {
//! let client = Client::connect("/srv/files/run".as_ref(), "web")?;
//! let mut data = client.read("index.html", Range::WHOLE)?;
//! let size = data.file_info()?.size;
//! let mut body = Vec::new();
//! data.read_to_end(&mut body)?;
//! assert_eq!(body.len(), size);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client;
pub mod inline;
pub mod messages;
pub mod protocol;
pub mod request;
/// The system-call layer (`sendfiled-sys`), which the client shares with the
/// daemon.
pub use sendfiled_sys as sys;
#[cfg(feature = "tokio")]
pub mod tokio_client;

pub use client::{
    spawn, Client, Completion, DataChannel, FileInfo, HeaderTrailer, Range, Response, SpawnOptions,
    Spawned, StatusChannel,
};
#[cfg(feature = "tokio")]
pub use tokio_client::{AsyncClient, DataReader, OpenFile, Sent, Transfer};
