//! Giving a client connection to pingora: [`Handed`] wraps the socket (plain or TLS) with
//! the bytes the fast path already read, and implements pingora's transport traits so
//! pingora's HTTP/1 and HTTP/2 servers read the request from its first byte.

use std::fmt;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::ALPN;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest, TimingDigest};
use pingora::protocols::{Peek, Shutdown, Ssl, UniqueID, UniqueIDType};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A client connection handed to pingora.
pub struct Handed<S> {
    io: S,
    /// Bytes read from `io` before the hand-off, served first.
    prefix: Vec<u8>,
    pos: usize,
    fd: RawFd,
    socket: Arc<SocketDigest>,
    h2: bool,
}

impl<S> Handed<S> {
    /// Wrap `io` (whose socket is `fd`), replaying `prefix` first; `h2` when TLS negotiated
    /// ALPN `h2`.
    pub fn new(io: S, fd: RawFd, prefix: Vec<u8>, h2: bool) -> Self {
        Handed {
            io,
            prefix,
            pos: 0,
            fd,
            socket: Arc::new(SocketDigest::from_raw_fd(fd)),
            h2,
        }
    }
}

impl<S> fmt::Debug for Handed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handed")
            .field("fd", &self.fd)
            .field("h2", &self.h2)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Handed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let pos = self.pos;
            buf.put_slice(&self.prefix[pos..pos + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Handed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[async_trait]
impl<S: AsyncWrite + Unpin + Send> Shutdown for Handed<S> {
    async fn shutdown(&mut self) {
        let _ = AsyncWriteExt::shutdown(&mut self.io).await;
    }
}

impl<S> UniqueID for Handed<S> {
    fn id(&self) -> UniqueIDType {
        self.fd
    }
}

impl<S> Ssl for Handed<S> {
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.h2.then_some(ALPN::H2)
    }
}

impl<S> GetTimingDigest for Handed<S> {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl<S> GetProxyDigest for Handed<S> {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl<S> GetSocketDigest for Handed<S> {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.socket.clone())
    }
}

impl<S> Peek for Handed<S> {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn prefix_is_read_before_the_socket() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut h = Handed::new(b, -1, b"hello".to_vec(), false);
        let mut s = String::new();
        h.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
        assert_eq!(h.selected_alpn_proto(), None);
        assert_eq!(Handed::new((), 3, Vec::new(), true).selected_alpn_proto(), Some(ALPN::H2));
    }
}
