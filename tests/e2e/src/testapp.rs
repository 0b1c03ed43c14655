//! `berth-testapp`: a small multi-mode program the end-to-end suite runs as PID 1 inside pods.
//!
//! Modes (the first argument):
//! - `http PORT [--v6only | --v4only] [--text TEXT]`: an HTTP/1.1 server (keep-alive) that
//!   answers every request with `TEXT\nBERTH_CONTAINER_ID=<id>\n` plus one `NAME=value` line per
//!   `?env=NAME` query parameter (`NAME unset` when the variable is not set), then
//!   `uid=<uid> gid=<gid> cwd=<dir>` for `?whoami`, then one `PATH=<content>` line per
//!   `?read=PATH` under /sys/fs/cgroup or /proc (a file's lines joined by `; `, a directory's
//!   sorted entries joined by spaces; `PATH unreadable: <error>` on failure), then
//!   `body_bytes=N` when the request had a body, then for `?headers` one `name: value` line per
//!   forwarding or credential header it got (`name absent` otherwise). `/ws` upgrades to
//!   a websocket that echoes every text and binary message; `/sse` sends three server-sent
//!   events half a second apart (`data: event N`), then closes.
//! - `exit CODE [--after-ms N]`: waits N milliseconds, prints `exiting with CODE`, exits with it.
//! - `hog`: allocates and touches memory 1 MiB at a time, forever.
//! - `sleep`: sleeps forever.
//! - `forkbomb`: forks waiting children until fork fails, prints
//!   `forkbomb: fork stopped after N children: <error>`, then holds them.
//! - `connect ADDR...`: tries a TCP connection to each ADDR (`ip:port` or `[ip6]:port`) in
//!   turn, for 3 s each, prints one line `ADDR connected`, `ADDR refused` or
//!   `ADDR unreachable: <error>` per address, and exits with the worst outcome: 0 (all
//!   connected), 3 (one refused, none unreachable) or 4 (one unreachable).
//! - `attack`: tries what hostile code would try first to reach the host (see `attacks.rs`),
//!   prints one line per attempt, and exits 0 if every one was blocked, 5 otherwise.
//!
//! Every mode exits 0 promptly on SIGTERM or SIGINT: as PID 1 of a pid namespace the kernel
//! would otherwise ignore those signals.

mod attacks;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

const USAGE: &str = "usage: testapp http PORT [--v6only | --v4only] [--text TEXT]
       testapp exit CODE [--after-ms N]
       testapp hog
       testapp sleep
       testapp connect ADDR...
       testapp attack
       testapp forkbomb";

const DEFAULT_TEXT: &str = "hello from testapp";
const MIB: usize = 1024 * 1024;
/// Upper bound of a request head (request line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Where `?read=PATH` may look: the pod's own view of its cgroups and processes.
const READABLE_ROOTS: [&str; 2] = ["/sys/fs/cgroup", "/proc"];

fn main() -> ExitCode {
    install_signal_handlers();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("http") => parse_http(&args[1..]).and_then(|opts| serve_http(&opts)),
        Some("exit") => return exit_mode(&args[1..]),
        Some("hog") => hog(),
        Some("sleep") => sleep_forever(),
        Some("forkbomb") => forkbomb(),
        Some("connect") => return connect_mode(&args[1..]),
        Some("attack") => {
            return if attacks::run() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(5)
            }
        }
        _ => Err(format!("unknown mode\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testapp: {e}");
            ExitCode::from(2)
        }
    }
}

/// Reports for each address whether a TCP connection succeeds; the exit code is the worst
/// outcome, so one process (one pod) can try an allowed target and blocked ones.
fn connect_mode(args: &[String]) -> ExitCode {
    let mut addrs = Vec::new();
    for arg in args {
        match arg.parse::<SocketAddr>() {
            Ok(addr) => addrs.push(addr),
            Err(e) => {
                eprintln!(
                    "testapp: connect: {arg:?} is not an address like 10.0.0.2:80 ({e})\n{USAGE}"
                );
                return ExitCode::from(2);
            }
        }
    }
    if addrs.is_empty() {
        eprintln!("testapp: connect needs an address like 10.0.0.2:80\n{USAGE}");
        return ExitCode::from(2);
    }
    let mut worst = 0u8;
    for addr in addrs {
        let code = match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(_) => {
                say(&format!("{addr} connected"));
                0
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                say(&format!("{addr} refused"));
                3
            }
            Err(e) => {
                say(&format!("{addr} unreachable: {e}"));
                4
            }
        };
        worst = worst.max(code);
    }
    ExitCode::from(worst)
}

/// Writes a line to stdout and flushes it, so log collection sees it at once.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    // A closed stdout must not kill the app: its behaviour is what the tests observe.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn say_err(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

extern "C" fn on_terminate(signal: libc::c_int) {
    let msg: &[u8] = if signal == libc::SIGTERM {
        b"testapp: got SIGTERM, exiting\n"
    } else {
        b"testapp: got SIGINT, exiting\n"
    };
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is a valid static buffer.
    unsafe {
        libc::write(1, msg.as_ptr().cast(), msg.len());
        libc::_exit(0);
    }
}

fn install_signal_handlers() {
    let handler = on_terminate as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only calls async-signal-safe functions (see `on_terminate`).
        let previous = unsafe { libc::signal(signal, handler) };
        if previous == libc::SIG_ERR {
            say_err(&format!(
                "testapp: could not install a handler for signal {signal}"
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// exit, hog, sleep

fn exit_mode(args: &[String]) -> ExitCode {
    let parsed = (|| -> Result<(u8, u64), String> {
        let code = args.first().ok_or("exit: missing CODE")?;
        let code: u8 = code
            .parse()
            .map_err(|_| format!("exit: bad CODE {code:?}"))?;
        let mut after_ms = 0;
        let mut rest = args[1..].iter();
        while let Some(flag) = rest.next() {
            match flag.as_str() {
                "--after-ms" => {
                    let v = rest.next().ok_or("exit: --after-ms needs a value")?;
                    after_ms = v
                        .parse()
                        .map_err(|_| format!("exit: bad --after-ms {v:?}"))?;
                }
                other => return Err(format!("exit: unknown flag {other:?}")),
            }
        }
        Ok((code, after_ms))
    })();
    match parsed {
        Ok((code, after_ms)) => {
            std::thread::sleep(Duration::from_millis(after_ms));
            say(&format!("exiting with {code}"));
            ExitCode::from(code)
        }
        Err(e) => {
            say_err(&format!("testapp: {e}\n{USAGE}"));
            ExitCode::from(2)
        }
    }
}

fn hog() -> Result<(), String> {
    say("hog: allocating memory 1 MiB at a time");
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // A non-zero fill writes every page, so the memory is really resident.
        chunks.push(vec![0xA5; MIB]);
        if chunks.len().is_multiple_of(16) {
            say(&format!("hog: {} MiB touched", chunks.len()));
        }
        std::hint::black_box(&chunks);
    }
}

/// Forks children that wait forever until fork fails (or 100 000 of them), says how many,
/// then holds them.
fn forkbomb() -> Result<(), String> {
    let mut children = 0u32;
    let stopped = loop {
        // SAFETY: this mode is single-threaded; a child only waits for signals.
        match unsafe { libc::fork() } {
            -1 => break io::Error::last_os_error().to_string(),
            0 => loop {
                // SAFETY: no memory is touched; the handlers end the process on SIGTERM.
                unsafe { libc::pause() };
            },
            _ => children += 1,
        }
        if children >= 100_000 {
            break "reached 100000".to_string();
        }
    };
    say(&format!(
        "forkbomb: fork stopped after {children} children: {stopped}"
    ));
    sleep_forever()
}

fn sleep_forever() -> Result<(), String> {
    say("sleeping forever");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

// ---------------------------------------------------------------------------------------------
// http

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bind {
    DualStack,
    V6Only,
    V4Only,
}

struct HttpOptions {
    port: u16,
    bind: Bind,
    text: String,
}

fn parse_http(args: &[String]) -> Result<HttpOptions, String> {
    let port = args.first().ok_or("http: missing PORT")?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("http: bad PORT {port:?}"))?;
    let mut opts = HttpOptions {
        port,
        bind: Bind::DualStack,
        text: DEFAULT_TEXT.to_string(),
    };
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        match flag.as_str() {
            "--v6only" => opts.bind = Bind::V6Only,
            "--v4only" => opts.bind = Bind::V4Only,
            "--text" => opts.text = rest.next().ok_or("http: --text needs a value")?.clone(),
            other => return Err(format!("http: unknown flag {other:?}")),
        }
    }
    Ok(opts)
}

fn bind_listener(port: u16, bind: Bind) -> io::Result<TcpListener> {
    let (domain, addr) = match bind {
        Bind::V4Only => (
            Domain::IPV4,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        ),
        Bind::V6Only | Bind::DualStack => (
            Domain::IPV6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        ),
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if domain == Domain::IPV6 {
        socket.set_only_v6(bind == Bind::V6Only)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

fn serve_http(opts: &HttpOptions) -> Result<(), String> {
    let listener = bind_listener(opts.port, opts.bind).map_err(|e| {
        format!(
            "http: cannot listen on port {} ({:?}): {e}",
            opts.port, opts.bind
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("http: local_addr: {e}"))?;
    let mode = match opts.bind {
        Bind::DualStack => "dual-stack",
        Bind::V6Only => "ipv6 only",
        Bind::V4Only => "ipv4 only",
    };
    say(&format!("listening on {local} ({mode})"));
    say_err("testapp stderr ready");
    let text: Arc<str> = Arc::from(opts.text.as_str());
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let text = Arc::clone(&text);
                std::thread::spawn(move || {
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    if let Err(e) = handle_connection(stream, &text) {
                        say(&format!("connection from {peer} ended with an error: {e}"));
                    }
                });
            }
            Err(e) => say_err(&format!("accept failed: {e}")),
        }
    }
    Ok(())
}

struct RequestHead {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    fn keep_alive(&self) -> bool {
        if self.header_has_token("connection", "close") {
            return false;
        }
        self.version == "HTTP/1.1" || self.header_has_token("connection", "keep-alive")
    }
}

/// Reads one request head; `Ok(None)` on a clean end of stream between requests.
fn read_head(reader: &mut BufReader<TcpStream>) -> Result<Option<RequestHead>, String> {
    let mut total = 0usize;
    let mut request_line = String::new();
    // Tolerate empty lines before a request (RFC 9112 section 2.2).
    while request_line.trim().is_empty() {
        request_line.clear();
        let n = reader
            .read_line(&mut request_line)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        total += n;
        if total > MAX_HEAD_BYTES {
            return Err("request head too large".into());
        }
    }
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "malformed request line {:?}",
            request_line.trim_end()
        ));
    };
    let mut head = RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers: Vec::new(),
    };
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed inside the request head".into());
        }
        total += n;
        if total > MAX_HEAD_BYTES {
            return Err("request head too large".into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(Some(head));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        head.headers
            .push((name.trim().to_string(), value.trim().to_string()));
    }
}

fn handle_connection(stream: TcpStream, text: &str) -> Result<(), String> {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("clone socket: {e}"))?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        say(&format!(
            "request {} {} from {peer}",
            head.method, head.target
        ));

        if head.header("transfer-encoding").is_some() {
            respond(
                &mut writer,
                501,
                "chunked request bodies are not supported\n",
                false,
                true,
            )?;
            return Ok(());
        }
        let body_len: u64 = match head.header("content-length") {
            Some(v) => v.parse().map_err(|_| format!("bad content-length {v:?}"))?,
            None => 0,
        };
        io::copy(&mut (&mut reader).take(body_len), &mut io::sink())
            .map_err(|e| format!("read body: {e}"))?;

        if head.path() == "/ws" && head.header_has_token("upgrade", "websocket") {
            return websocket_echo(reader, writer, &head, &peer);
        }
        if head.path() == "/sse" {
            return server_sent_events(&mut writer);
        }

        let mut body = response_body(text, head.query());
        if body_len > 0 {
            body.push_str(&format!("body_bytes={body_len}\n"));
        }
        if head.query().split('&').any(|p| p == "headers") {
            for name in [
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "forwarded",
                "authorization",
                "cookie",
            ] {
                match head.header(name) {
                    Some(value) => body.push_str(&format!("{name}: {value}\n")),
                    None => body.push_str(&format!("{name} absent\n")),
                }
            }
        }
        let keep_alive = head.keep_alive();
        respond(&mut writer, 200, &body, keep_alive, head.method != "HEAD")?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Three events half a second apart, each flushed on its own, then the end of the stream.
fn server_sent_events(out: &mut TcpStream) -> Result<(), String> {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                Connection: close\r\n\r\n";
    out.write_all(head.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    for n in 1..=3 {
        out.write_all(format!("data: event {n}\n\n").as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| format!("write: {e}"))?;
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

fn response_body(text: &str, query: &str) -> String {
    let mut body = format!("{text}\n");
    let mut vars = vec!["BERTH_CONTAINER_ID".to_string()];
    let mut whoami = false;
    let mut reads = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("env", name) if !name.is_empty() => vars.push(name.to_string()),
            ("whoami", _) => whoami = true,
            ("read", path) if !path.is_empty() => reads.push(path.to_string()),
            _ => {}
        }
    }
    for name in vars {
        match std::env::var(&name) {
            Ok(value) => body.push_str(&format!("{name}={value}\n")),
            Err(_) => body.push_str(&format!("{name} unset\n")),
        }
    }
    if whoami {
        // SAFETY: getuid(2) and getgid(2) have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|e| format!("({e})"));
        body.push_str(&format!("uid={uid} gid={gid} cwd={cwd}\n"));
    }
    for path in reads {
        match read_path(&path) {
            Ok(content) => body.push_str(&format!("{path}={content}\n")),
            Err(e) => body.push_str(&format!("{path} unreadable: {e}\n")),
        }
    }
    body
}

/// A file's lines joined by `; `, or a directory's sorted entries joined by spaces; only under
/// `READABLE_ROOTS`.
fn read_path(path: &str) -> Result<String, String> {
    let p = Path::new(path);
    let allowed = READABLE_ROOTS.iter().any(|root| p.starts_with(root))
        && !p.components().any(|c| c == Component::ParentDir);
    if !allowed {
        return Err(format!("only paths under {READABLE_ROOTS:?} may be read"));
    }
    if p.is_dir() {
        let mut names = std::fs::read_dir(p)
            .and_then(|entries| {
                entries
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<io::Result<Vec<_>>>()
            })
            .map_err(|e| e.to_string())?;
        names.sort();
        return Ok(names.join(" "));
    }
    let text = std::fs::read_to_string(p).map_err(|e| e.to_string())?;
    Ok(text.trim_end().lines().collect::<Vec<_>>().join("; "))
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    body: &str,
    keep_alive: bool,
    send_body: bool,
) -> Result<(), String> {
    let reason = match status {
        200 => "OK",
        501 => "Not Implemented",
        _ => "Unknown",
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    if send_body {
        response.push_str(body);
    }
    out.write_all(response.as_bytes())
        .map_err(|e| format!("write response: {e}"))?;
    out.flush().map_err(|e| format!("flush response: {e}"))
}

fn websocket_echo(
    reader: BufReader<TcpStream>,
    mut writer: TcpStream,
    head: &RequestHead,
    peer: &str,
) -> Result<(), String> {
    let key = head
        .header("sec-websocket-key")
        .ok_or("websocket upgrade without a key")?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    writer
        .write_all(response.as_bytes())
        .map_err(|e| format!("write upgrade: {e}"))?;
    writer.flush().map_err(|e| format!("flush upgrade: {e}"))?;
    // Bytes the client sent right after its request are already in the reader's buffer.
    let leftover = reader.buffer().to_vec();
    let stream = reader.into_inner();
    let mut ws = WebSocket::from_partially_read(stream, leftover, Role::Server, None);
    say(&format!("websocket open from {peer}"));
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                ws.send(msg).map_err(|e| format!("websocket send: {e}"))?;
            }
            Ok(Message::Close(_)) => {
                // tungstenite queues the close reply; flushing completes the close handshake.
                let _ = ws.flush();
                say(&format!("websocket closed by {peer}"));
                return Ok(());
            }
            Ok(_) => {} // ping/pong: tungstenite answers pings itself
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                say(&format!("websocket closed by {peer}"));
                return Ok(());
            }
            Err(e) => return Err(format!("websocket read: {e}")),
        }
    }
}
