//! Errors a user sees: each names the flag, or the operation and the address, that failed. The
//! variant, never the wording, decides the exit status.

use std::fmt;
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
    /// A file named by a flag could not be opened, created or read (exit status 2: the input
    /// is wrong) or written (exit status 1: a fault during the run).
    #[error("{flag}: {op} {path}: {err}")]
    File {
        flag: &'static str,
        op: FileOp,
        path: String,
        err: io::Error,
    },
    /// Setting up the event loop failed: exit status 1.
    #[error("{0}: {1}")]
    Setup(&'static str, io::Error),
}

/// What was being done to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    Create,
    Read,
    Write,
}

impl fmt::Display for FileOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileOp::Create => "create",
            FileOp::Read => "read",
            FileOp::Write => "write",
        })
    }
}

/// Exit status of a bad flag, argument or input file.
pub const EXIT_USAGE: i32 = 2;
/// Exit status of a fault at run time.
pub const EXIT_FAULT: i32 = 1;

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

    pub fn file(flag: &'static str, op: FileOp, path: &str, err: io::Error) -> Self {
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
            Error::Config { .. } => EXIT_USAGE,
            Error::File { op, .. } => match op {
                FileOp::Create | FileOp::Read => EXIT_USAGE,
                FileOp::Write => EXIT_FAULT,
            },
            Error::Io { .. } | Error::Setup(..) => EXIT_FAULT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_decides_the_exit_status() {
        let err = || io::Error::other("x");
        assert_eq!(Error::config("--size", "bad").exit_code(), 2);
        assert_eq!(
            Error::file("--plot", FileOp::Create, "p", err()).exit_code(),
            2
        );
        assert_eq!(
            Error::file("INPUT", FileOp::Read, "p", err()).exit_code(),
            2
        );
        assert_eq!(
            Error::file("--plot", FileOp::Write, "p", err()).exit_code(),
            1
        );
        let addr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(Error::io("bind", addr, err()).exit_code(), 1);
        assert_eq!(Error::Setup("poll", err()).exit_code(), 1);
        assert_eq!(
            Error::file("--plot", FileOp::Write, "p", err()).to_string(),
            "--plot: write p: x"
        );
    }
}
