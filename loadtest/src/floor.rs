//! The machine's floor for a fan-out, with no chat server at all: `--writers` threads
//! write 100-byte WebSocket frames to each of `--members` loopback TCP sockets on the
//! same open-loop schedule as `fanout` (every message due at once in one write per
//! socket, as the realtime batches), and `--readers` epoll threads read them back and
//! time them. No queues, no Redis, no decoding: what is left is the kernel's cost of one
//! `send` and one receive per recipient, which no server on this machine can beat.
//!
//! Run it beside a `fanout` figure to see how much of a latency is the server's.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::config::parse_duration;
use crate::procstat::thread_cpu_us;
use crate::report::{Latency, ms};
use crate::stamp;
use crate::stats::Hist;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-floor",
    version,
    about = "The loopback floor of a fan-out on this machine: the same schedule as \
             `chat-loadtest fanout`, written by bare threads, no chat server"
)]
pub struct FloorConfig {
    /// Recipients: one TCP connection each. Default: 1000.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Writing threads (the replicas), each writing to its share of the members in
    /// turn. Default: 2.
    #[arg(long, default_value_t = 2)]
    pub writers: usize,
    /// Reading threads (the clients), each polling its share. Default: 1.
    #[arg(long, default_value_t = 1)]
    pub readers: usize,
    /// Messages per second. Default: 250.
    #[arg(long, default_value_t = 250.0)]
    pub rate: f64,
    /// How long messages are written: `10s`, `500ms`. Default: 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Payload bytes per frame (at least 16). Default: 100.
    #[arg(long, default_value_t = 100)]
    pub message_size: usize,
    /// Print one JSON document instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct FloorReport {
    pub members: usize,
    pub writers: usize,
    pub readers: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub message_size: usize,
    pub expected: u64,
    pub delivered: u64,
    /// Frames that arrived out of order or twice: TCP makes this 0, so anything else is
    /// a bug in this tool.
    pub out_of_order: u64,
    pub latency: Latency,
    /// CPU time of the writing threads per delivered frame.
    pub writer_cpu_us_per_delivery: f64,
    /// CPU time of the reading threads per delivered frame.
    pub reader_cpu_us_per_delivery: f64,
}

impl FloorReport {
    pub fn summary(&self) -> String {
        let l = &self.latency;
        format!(
            "loopback floor: {} members, {} writers, {} readers, {} msg/s for {:.1} s\n\
             delivered {} of {} ({} out of order)\n\
             latency p50 {} · p90 {} · p99 {} · p99.9 {} · max {}\n\
             CPU per delivery: writers {:.2} µs, readers {:.2} µs\n",
            self.members,
            self.writers,
            self.readers,
            self.rate,
            self.duration_s,
            self.delivered,
            self.expected,
            self.out_of_order,
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us),
            self.writer_cpu_us_per_delivery,
            self.reader_cpu_us_per_delivery,
        )
    }
}

/// A server frame as the realtime writes it: FIN + binary, the length, the payload.
/// The payload starts with the message index and its intended time (little endian).
fn frame(k: u64, intended_us: u64, size: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(size + 10);
    f.push(0x82);
    match size {
        0..=125 => f.push(size as u8),
        126..=65535 => {
            f.push(126);
            f.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            f.push(127);
            f.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&k.to_le_bytes());
    f.extend_from_slice(&intended_us.to_le_bytes());
    f.resize(f.len() + size - 16, b'x');
    f
}

/// One whole frame at the start of `buf`: (index, intended time, frame length).
fn parse(buf: &[u8]) -> Option<(u64, u64, usize)> {
    let (len, head) = match *buf.get(1)? {
        n @ 0..=125 => (n as usize, 2),
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        _ => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
    };
    let p = buf.get(head..head + len)?;
    let k = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
    let t = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    Some((k, t, head + len))
}

struct Recipient {
    stream: MioStream,
    pending: Vec<u8>,
    next: u64,
}

struct ReaderResult {
    hist: Hist,
    delivered: u64,
    out_of_order: u64,
    cpu_us: u64,
}

/// An epoll instance watching `conns` (token = index).
fn watch(conns: &mut [Recipient]) -> std::io::Result<Poll> {
    let poll = Poll::new()?;
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(&mut c.stream, Token(i), Interest::READABLE)?;
    }
    Ok(poll)
}

fn read_all(
    mut poll: Poll,
    mut conns: Vec<Recipient>,
    expected_each: u64,
    stop: Arc<AtomicBool>,
) -> ReaderResult {
    let cpu0 = thread_cpu_us();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = ReaderResult {
        hist: Hist::fine(),
        delivered: 0,
        out_of_order: 0,
        cpu_us: 0,
    };
    let total = expected_each * conns.len() as u64;
    while out.delivered < total && !stop.load(Ordering::Relaxed) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(100)))
            .is_err()
        {
            continue;
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            // Edge-triggered: read until the socket is empty.
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let now = stamp::now_us();
                        c.pending.extend_from_slice(&buf[..n]);
                        let mut at = 0;
                        while let Some((k, t, len)) = parse(&c.pending[at..]) {
                            at += len;
                            if k != c.next {
                                out.out_of_order += 1;
                            }
                            c.next = k + 1;
                            out.delivered += 1;
                            out.hist.record(now.saturating_sub(t));
                        }
                        c.pending.drain(..at);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }
    out.cpu_us = thread_cpu_us() - cpu0;
    out
}

/// Writes message k at `t0 + k / rate` to each of `socks`, in turn, as the realtime
/// does: every message already due when a round starts goes out in one write per
/// socket. Returns the thread's CPU time.
fn write_all(mut socks: Vec<TcpStream>, t0: u64, messages: u64, rate: f64, size: usize) -> u64 {
    let cpu0 = thread_cpu_us();
    let intended = |k: u64| t0 + (k as f64 * 1e6 / rate) as u64;
    let mut batch = Vec::new();
    let mut k = 0;
    while k < messages {
        let now = stamp::now_us();
        if intended(k) > now {
            std::thread::sleep(Duration::from_micros(intended(k) - now));
        }
        let now = stamp::now_us();
        batch.clear();
        while k < messages && intended(k) <= now {
            batch.extend_from_slice(&frame(k, intended(k), size));
            k += 1;
        }
        for s in &mut socks {
            if s.write_all(&batch).is_err() {
                return thread_cpu_us() - cpu0;
            }
        }
    }
    thread_cpu_us() - cpu0
}

/// Runs the floor measurement.
pub fn run(cfg: &FloorConfig) -> Result<FloorReport, String> {
    if cfg.members == 0 || cfg.writers == 0 || cfg.readers == 0 {
        return Err("--members, --writers and --readers must be at least 1".into());
    }
    if cfg.message_size < 16 {
        return Err("--message-size must be at least 16 (index and time)".into());
    }
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        return Err("--rate must be a positive number".into());
    }
    crate::raise_nofile();
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut writers: Vec<Vec<TcpStream>> = (0..cfg.writers).map(|_| Vec::new()).collect();
    let mut readers: Vec<Vec<Recipient>> = (0..cfg.readers).map(|_| Vec::new()).collect();
    for i in 0..cfg.members {
        let client = TcpStream::connect(addr).map_err(|e| format!("connect {i}: {e}"))?;
        let (server, _) = listener.accept().map_err(|e| format!("accept {i}: {e}"))?;
        for s in [&client, &server] {
            s.set_nodelay(true).map_err(|e| e.to_string())?;
        }
        client.set_nonblocking(true).map_err(|e| e.to_string())?;
        writers[i % cfg.writers].push(server);
        readers[i % cfg.readers].push(Recipient {
            stream: MioStream::from_std(client),
            pending: Vec::new(),
            next: 0,
        });
    }

    let messages = (cfg.rate * cfg.duration.as_secs_f64()).round() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let mut reading = Vec::new();
    for mut conns in readers {
        let poll = watch(&mut conns).map_err(|e| format!("epoll: {e}"))?;
        let stop = stop.clone();
        reading.push(std::thread::spawn(move || {
            read_all(poll, conns, messages, stop)
        }));
    }
    // Start a little ahead so that every writer is asleep at t0.
    let t0 = stamp::now_us() + 50_000;
    let writing: Vec<_> = writers
        .into_iter()
        .map(|socks| {
            let (rate, size) = (cfg.rate, cfg.message_size);
            std::thread::spawn(move || write_all(socks, t0, messages, rate, size))
        })
        .collect();
    let writer_cpu: u64 = writing.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    // The readers stop on their own once all arrived; whatever is late by 10 s is lost.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reading.iter().any(|h| !h.is_finished()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let mut hist = Hist::fine();
    let (mut delivered, mut out_of_order, mut reader_cpu) = (0, 0, 0);
    for h in reading {
        let r = h
            .join()
            .map_err(|_| "a reader thread panicked".to_owned())?;
        hist.merge(&r.hist);
        delivered += r.delivered;
        out_of_order += r.out_of_order;
        reader_cpu += r.cpu_us;
    }
    let per = |cpu: u64| cpu as f64 / delivered.max(1) as f64;
    Ok(FloorReport {
        members: cfg.members,
        writers: cfg.writers,
        readers: cfg.readers,
        rate: cfg.rate,
        duration_s: cfg.duration.as_secs_f64(),
        message_size: cfg.message_size,
        expected: messages * cfg.members as u64,
        delivered,
        out_of_order,
        latency: Latency::of(&hist),
        writer_cpu_us_per_delivery: per(writer_cpu),
        reader_cpu_us_per_delivery: per(reader_cpu),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_back_at_every_length_form() {
        for size in [16, 100, 125, 126, 1000, 70_000] {
            let f = frame(7, 123_456, size);
            assert_eq!(parse(&f), Some((7, 123_456, f.len())), "size {size}");
            assert_eq!(
                parse(&f[..f.len() - 1]),
                None,
                "a cut frame waits, size {size}"
            );
        }
    }
}
