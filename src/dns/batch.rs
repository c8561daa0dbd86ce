//! Batched UDP I/O for the DNS loop (Linux `recvmmsg`/`sendmmsg`): one system call moves up
//! to [`BATCH`] datagrams each way, which is most of the cost of a local answer. The
//! buffers are allocated once per socket; replies go back to the address a request came
//! from, copied as raw `sockaddr` bytes.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;

/// Largest request read (bigger ones are truncated and then fail to parse).
pub const MAX_REQUEST: usize = 4096;

/// Receive side: `BATCH` buffers and their source addresses.
pub struct RecvBatch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

/// Send side: `BATCH` reply buffers of `reply_size` bytes and their destinations.
pub struct SendBatch {
    bufs: Vec<u8>,
    reply_size: usize,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    lens: Vec<usize>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    count: usize,
}

// SAFETY: the raw pointers inside point only into the batch's own heap buffers and are
// rewritten before every system call; moving the batch to another thread is sound.
unsafe impl Send for RecvBatch {}
// SAFETY: as for RecvBatch.
unsafe impl Send for SendBatch {}

/// Point a message header at one buffer (`iov`) and one address; no control data.
fn point(h: &mut libc::mmsghdr, addr: &mut libc::sockaddr_storage, addr_len: libc::socklen_t, iov: &mut libc::iovec) {
    h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
    h.msg_hdr.msg_namelen = addr_len;
    h.msg_hdr.msg_iov = iov;
    h.msg_hdr.msg_iovlen = 1;
    h.msg_hdr.msg_control = std::ptr::null_mut();
    h.msg_hdr.msg_controllen = 0;
    h.msg_hdr.msg_flags = 0;
    h.msg_len = 0;
}

fn zeroed_hdrs() -> Vec<libc::mmsghdr> {
    // SAFETY: mmsghdr is plain C data (pointers and integers); all-zero is a valid value.
    (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect()
}

fn zeroed_addrs() -> Vec<libc::sockaddr_storage> {
    // SAFETY: sockaddr_storage is plain C data; all-zero is a valid (AF_UNSPEC) value.
    (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect()
}

fn empty_iovs() -> Vec<libc::iovec> {
    (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        })
        .collect()
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![0; BATCH * MAX_REQUEST],
            addrs: zeroed_addrs(),
            iovs: empty_iovs(),
            hdrs: zeroed_hdrs(),
        }
    }
}

impl RecvBatch {
    /// Read up to [`BATCH`] datagrams without blocking (`WouldBlock` when none is queued);
    /// returns how many were read.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * MAX_REQUEST..].as_mut_ptr().cast(),
                iov_len: MAX_REQUEST,
            };
            let storage_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            point(&mut self.hdrs[i], &mut self.addrs[i], storage_len, &mut self.iovs[i]);
        }
        // SAFETY: every header points into buffers owned by `self` that outlive the call,
        // with their true lengths; the kernel writes at most those lengths.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: its bytes and source address (`None`
    /// for an address family other than IPv4/IPv6).
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let len = (self.hdrs[i].msg_len as usize).min(MAX_REQUEST);
        let bytes = &self.bufs[i * MAX_REQUEST..i * MAX_REQUEST + len];
        (bytes, to_socket_addr(&self.addrs[i], self.hdrs[i].msg_hdr.msg_namelen))
    }

    /// The raw source address of datagram `i` (to reply to it).
    fn raw_addr(&self, i: usize) -> (&libc::sockaddr_storage, libc::socklen_t) {
        (&self.addrs[i], self.hdrs[i].msg_hdr.msg_namelen)
    }
}

fn to_socket_addr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(ss.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is big enough.
            let a: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above for sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

impl SendBatch {
    /// Reply buffers of `reply_size` bytes each.
    pub fn new(reply_size: usize) -> Self {
        SendBatch {
            bufs: vec![0; BATCH * reply_size],
            reply_size,
            addrs: zeroed_addrs(),
            addr_lens: vec![0; BATCH],
            lens: vec![0; BATCH],
            iovs: empty_iovs(),
            hdrs: zeroed_hdrs(),
            count: 0,
        }
    }

    /// The buffer for the next reply (write into it, then [`SendBatch::push`]).
    pub fn next_buf(&mut self) -> &mut [u8] {
        let i = self.count;
        &mut self.bufs[i * self.reply_size..(i + 1) * self.reply_size]
    }

    /// Queue the `len` bytes written into [`SendBatch::next_buf`] as the reply to datagram
    /// `i` of `from`.
    pub fn push(&mut self, len: usize, from: &RecvBatch, i: usize) {
        let (addr, addr_len) = from.raw_addr(i);
        let j = self.count;
        self.addrs[j] = *addr;
        self.addr_lens[j] = addr_len;
        self.lens[j] = len.min(self.reply_size);
        self.count += 1;
    }

    /// Queued replies.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Send the queued replies from offset `from` on (non-blocking); returns how many
    /// went out. The queue is cleared by [`SendBatch::clear`].
    pub fn send(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        for i in from..self.count {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * self.reply_size..].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
            point(&mut self.hdrs[i], &mut self.addrs[i], self.addr_lens[i], &mut self.iovs[i]);
        }
        if from >= self.count {
            return Ok(0);
        }
        // SAFETY: headers from..count point into buffers owned by `self` with their true
        // lengths; the kernel only reads them.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs[from..].as_mut_ptr(),
                (self.count - from) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Forget the queued replies.
    pub fn clear(&mut self) {
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn batched_echo_over_loopback() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        let mut rx = RecvBatch::default();
        // Nothing queued: WouldBlock, not a hang.
        let e = rx.recv(server.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        for i in 0..5u8 {
            client.send_to(&[i; 3], server.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let n = rx.recv(server.as_raw_fd()).unwrap();
        assert_eq!(n, 5);
        let mut tx = SendBatch::new(64);
        for i in 0..n {
            let (bytes, src) = rx.get(i);
            assert_eq!(src, Some(client.local_addr().unwrap()));
            assert_eq!(bytes, &[i as u8; 3]);
            let buf = tx.next_buf();
            buf[..4].copy_from_slice(&[9, 9, 9, i as u8]);
            tx.push(4, &rx, i);
        }
        assert_eq!(tx.send(server.as_raw_fd(), 0).unwrap(), 5);
        tx.clear();
        assert!(tx.is_empty());
        let mut got = Vec::new();
        let mut b = [0u8; 16];
        for _ in 0..5 {
            let n = client.recv(&mut b).unwrap();
            got.push(b[..n].to_vec());
        }
        assert_eq!(got, (0..5u8).map(|i| vec![9, 9, 9, i]).collect::<Vec<_>>());
    }
}
