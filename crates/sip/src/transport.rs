//! Sockets: one UDP socket, a TCP listener, and one task pair per TCP
//! connection that frames the stream into messages for the B2BUA's task.

use std::net::SocketAddr;
use std::sync::Arc;

use hashbrown::HashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::message::{self, MAX_HEAD};
use crate::{Error, Transport};

pub type ConnId = u64;

/// Where a message came from, and so where its responses go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// The TCP connection, when known (responses go back on it).
    pub conn: Option<ConnId>,
}

/// What the network tasks tell the B2BUA's task.
pub enum NetEvent {
    Opened {
        conn: ConnId,
        addr: SocketAddr,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    Message {
        conn: ConnId,
        addr: SocketAddr,
        bytes: Vec<u8>,
    },
    /// Closed, or (for one we dialled) never opened.
    Closed { conn: ConnId },
}

/// Socket buffers sized for bursts of thousands of calls per second.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds without registering with a runtime: the SIP task registers the
/// socket on its own thread.
pub fn bind_udp(addr: SocketAddr) -> Result<std::net::UdpSocket, Error> {
    let bind_err = |source| Error::Bind {
        transport: "UDP",
        addr,
        source,
    };
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(bind_err)?;
    // Best effort: the kernel caps these at its own maxima.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    Ok(socket.into())
}

pub fn bind_tcp(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    let bind_err = |source| Error::Bind {
        transport: "TCP",
        addr,
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(listener)
}

/// The TCP connections the B2BUA's task knows, by id and by peer address.
#[derive(Default)]
pub struct Connections {
    next: ConnId,
    writers: HashMap<ConnId, (SocketAddr, mpsc::UnboundedSender<Vec<u8>>)>,
    by_addr: HashMap<SocketAddr, ConnId>,
}

impl Connections {
    pub fn new_id(&mut self) -> ConnId {
        self.next += 1;
        self.next
    }

    pub fn opened(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    ) {
        self.writers.insert(conn, (addr, writer));
        self.by_addr.insert(addr, conn);
    }

    pub fn closed(&mut self, conn: ConnId) {
        if let Some((addr, _)) = self.writers.remove(&conn)
            && self.by_addr.get(&addr) == Some(&conn)
        {
            self.by_addr.remove(&addr);
        }
    }

    /// Sends on the peer's connection, or on one to its address, or dials
    /// one. Returns the connection used, or `None` when it is gone.
    pub fn send(
        &mut self,
        peer: &Peer,
        bytes: Vec<u8>,
        events: &mpsc::UnboundedSender<NetEvent>,
    ) -> Option<ConnId> {
        let conn = peer
            .conn
            .filter(|c| self.writers.contains_key(c))
            .or_else(|| self.by_addr.get(&peer.addr).copied());
        let conn = match conn {
            Some(c) => c,
            None if peer.conn.is_some() => return None,
            None => self.dial(peer.addr, events),
        };
        let (_, writer) = self.writers.get(&conn)?;
        writer.send(bytes).ok()?;
        Some(conn)
    }

    fn dial(&mut self, addr: SocketAddr, events: &mpsc::UnboundedSender<NetEvent>) -> ConnId {
        let conn = self.new_id();
        let (tx, rx) = mpsc::unbounded_channel();
        self.opened(conn, addr, tx);
        let events = events.clone();
        tokio::spawn(async move {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    run_connection(conn, addr, stream, rx, events).await;
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot connect over TCP");
                    let _ = events.send(NetEvent::Closed { conn });
                }
            }
        });
        conn
    }
}

/// Accepts TCP connections until the task is dropped.
pub async fn accept_loop(
    listener: TcpListener,
    events: mpsc::UnboundedSender<NetEvent>,
    ids: Arc<std::sync::atomic::AtomicU64>,
    allow: impl Fn(std::net::IpAddr) -> bool,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if !allow(addr.ip()) {
            metrics::counter!("maskline_sip_untrusted_total").increment(1);
            tracing::debug!(%addr, "TCP connection from an untrusted source closed");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        // Accepted ids count down from the top so they never meet dialled ones.
        let conn = u64::MAX - ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        if events
            .send(NetEvent::Opened {
                conn,
                addr,
                writer: tx,
            })
            .is_err()
        {
            return;
        }
        tokio::spawn(run_connection(conn, addr, stream, rx, events.clone()));
    }
}

async fn run_connection(
    conn: ConnId,
    addr: SocketAddr,
    stream: TcpStream,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::UnboundedSender<NetEvent>,
) {
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match message::frame(&buf) {
                Ok(Some((skip, len))) => {
                    let bytes = buf[skip..skip + len].to_vec();
                    buf.drain(..skip + len);
                    if events
                        .send(NetEvent::Message { conn, addr, bytes })
                        .is_err()
                    {
                        break 'read;
                    }
                }
                Ok(None) => {
                    if buf.len() > MAX_HEAD + message::MAX_BODY {
                        break 'read;
                    }
                    break;
                }
                Err(e) => {
                    // A stream cannot be resynchronised after a bad frame.
                    tracing::debug!(%addr, error = %e, "closing TCP connection after a bad frame");
                    break 'read;
                }
            }
        }
    }
    writer.abort();
    let _ = events.send(NetEvent::Closed { conn });
}
