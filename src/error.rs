//! Errors a user sees: each names the flag, or the operation and the address, that failed.

use std::io;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or argument that cannot work: exit status 2.
    #[error("{flag}: {reason}")]
    Config { flag: &'static str, reason: String },
    /// A socket operation on an address failed: exit status 1.
    #[error("{op} {addr}: {err}")]
    Io {
        op: &'static str,
        addr: SocketAddr,
        err: io::Error,
    },
    /// A file named by a flag could not be opened (exit status 2) or written (exit status 1).
    #[error("{flag}: {op} {path}: {err}")]
    File {
        flag: &'static str,
        op: &'static str,
        path: String,
        err: io::Error,
    },
    /// Setting up the event loop failed: exit status 1.
    #[error("{0}: {1}")]
    Setup(&'static str, io::Error),
}

impl Error {
    pub fn config(flag: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            flag,
            reason: reason.into(),
        }
    }

    pub fn io(op: &'static str, addr: SocketAddr, err: io::Error) -> Self {
        Error::Io { op, addr, err }
    }

    pub fn file(flag: &'static str, op: &'static str, path: &str, err: io::Error) -> Self {
        Error::File {
            flag,
            op,
            path: path.to_string(),
            err,
        }
    }

    /// The process exit status for this error: 2 for bad input, 1 for runtime faults.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } => 2,
            Error::File { op, .. } if *op != "write" => 2,
            Error::Io { .. } | Error::Setup(..) | Error::File { .. } => 1,
        }
    }
}
