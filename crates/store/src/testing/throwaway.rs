//! A throwaway PostgreSQL cluster for one test process: Debian's `initdb`
//! into a temporary directory, `postgres` on a free loopback port with its
//! socket in that directory, shared by every test of the process.
//!
//! Nothing in a test process runs when it ends (statics are never dropped,
//! and a panic, Ctrl-C or SIGKILL ends it anyway), so the cluster belongs to
//! a guardian: a bash process, in a process group of its own so that a
//! terminal's Ctrl-C reaches only the tests, whose standard input is a pipe
//! from the test process. The guardian makes the directory, runs `initdb`
//! and `postgres`, and when the pipe closes, however the test process
//! ended, stops `postgres` (immediate shutdown: the data is thrown away) and
//! removes the directory. The test process never owns the directory, so no
//! moment of its life leaves one behind.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The guardian, kept (with the write end of its pipe) until the process
/// exits.
static GUARDIAN: OnceLock<Mutex<Child>> = OnceLock::new();

/// Arguments: the parent directory, the server binaries' directory, the
/// port, and `uid:gid` to run the cluster as (empty: as ourselves). Prints
/// the cluster's directory; if initdb fails, prints its log and exits; else
/// runs postgres until its standard input closes.
const GUARDIAN_SCRIPT: &str = r#"
set -u
trap '' INT HUP PIPE
parent=$1 bin=$2 port=$3 owner=$4
as_owner=()
[ -z "$owner" ] || as_owner=(setpriv --reuid="${owner%:*}" --regid="${owner#*:}" --clear-groups)
dir=$(mktemp -d "$parent/maskline-pg-XXXXXX") || exit 1
log=$dir/postgres.log
pg=
finish() {
    if [ -n "$pg" ]; then
        # A postgres still starting may not listen to SIGQUIT yet.
        kill -QUIT "$pg" 2>/dev/null
        for _ in $(seq 20); do kill -0 "$pg" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pg" 2>/dev/null
        wait "$pg" 2>/dev/null
    fi
    rm -rf "$dir"
    exit 0
}
echo "$dir"
if [ -n "$owner" ] && ! chown "$owner" "$dir"; then finish; fi
if ! "${as_owner[@]}" "$bin/initdb" --pgdata="$dir/data" --username=postgres --auth=trust \
        --encoding=UTF8 --locale=C --no-sync --no-instructions </dev/null >>"$log" 2>&1; then
    tail -c 16384 "$log"
    finish
fi
# TLS as a packaged server has it (a self-signed certificate), so that
# clients' sslmode is tested against a real handshake.
ssl=()
if command -v openssl >/dev/null \
    && openssl req -new -x509 -days 7 -nodes -subj /CN=localhost \
        -keyout "$dir/data/server.key" -out "$dir/data/server.crt" >>"$log" 2>&1 \
    && chmod 600 "$dir/data/server.key" \
    && { [ -z "$owner" ] || chown "$owner" "$dir/data/server.key" "$dir/data/server.crt"; }; then
    ssl=(-c ssl=on)
fi
# Throwaway data: durability on disk buys nothing here.
"${as_owner[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$dir" -c fsync=off -c full_page_writes=off \
    -c max_connections=300 "${ssl[@]}" </dev/null >>"$log" 2>&1 &
pg=$!
cat >/dev/null
finish
"#;

/// Starts the cluster and returns its URL (database `postgres`, trust
/// auth), or why it could not.
pub(super) fn start() -> Result<String, String> {
    let bin = bin_dir().ok_or(
        "no PostgreSQL server binaries (initdb, postgres) for a throwaway cluster: \
         install Debian's postgresql package (scripts/test does), or set \
         MASKLINE_TEST_DATABASE_URL",
    )?;
    let owner = Owner::current();
    let mut failures = String::new();
    for _ in 0..3 {
        let port = free_port();
        match launch(&bin, port, owner.as_ref()) {
            Ok(guardian) => {
                let _ = GUARDIAN.set(Mutex::new(guardian));
                return Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"));
            }
            Err(log) => {
                failures.push_str(&log);
                // A port found free may be taken before postgres binds it.
                if !log.contains("already in use") {
                    break;
                }
            }
        }
    }
    Err(format!(
        "the throwaway PostgreSQL cluster did not start:\n{failures}"
    ))
}

/// Starts a guardian and waits for its `postgres` to accept connections;
/// else returns what went wrong (the guardian has cleaned up).
fn launch(bin: &Path, port: u16, owner: Option<&Owner>) -> Result<Child, String> {
    let parent = owner.map_or_else(std::env::temp_dir, Owner::temp_dir);
    let mut guardian = Command::new("bash")
        .arg("-c")
        .arg(GUARDIAN_SCRIPT)
        .arg("maskline-pg-guardian")
        .arg(&parent)
        .arg(bin)
        .arg(port.to_string())
        .arg(owner.map_or_else(String::new, |o| format!("{}:{}", o.uid, o.gid)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the PostgreSQL guardian (bash): {e}"))?;
    let mut out = BufReader::new(guardian.stdout.take().ok_or("no guardian stdout")?);
    let mut dir = String::new();
    let _ = out.read_line(&mut dir);
    if dir.trim_end().is_empty() {
        let _ = guardian.wait();
        return Err(format!("cannot make a directory in {}", parent.display()));
    }
    let dir = PathBuf::from(dir.trim_end());
    let (data, log) = (dir.join("data"), dir.join("postgres.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ready(&data) {
            return Ok(guardian);
        }
        if let Ok(Some(_)) = guardian.try_wait() {
            // initdb failed: the guardian printed its log.
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            return Err(format!("initdb failed:\n{text}"));
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let timeout = Instant::now() > deadline;
        if text.contains("FATAL") || timeout {
            // Closing its input tells the guardian to clean up.
            drop(guardian.stdin.take());
            let _ = guardian.wait();
            let why = if timeout {
                "did not start within 60 s"
            } else {
                "failed"
            };
            return Err(format!("postgres on port {port} {why}:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `postmaster.pid` says `ready` once the server accepts connections.
fn ready(data: &Path) -> bool {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .is_ok_and(|pid| pid.lines().nth(7).is_some_and(|s| s.trim() == "ready"))
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// The newest Debian server installation (`/usr/lib/postgresql/<n>/bin`),
/// else `initdb` and `postgres` on the PATH.
fn bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .max();
    newest.map(|(_, bin)| bin).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).find(|d| has_both(d))
    })
}

/// PostgreSQL refuses to run as root: as root, the cluster runs as the
/// `postgres` system user (or `nobody`).
struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    fn current() -> Option<Owner> {
        if id(&["-u"])? != 0 {
            return None;
        }
        ["postgres", "nobody"].iter().find_map(|user| {
            Some(Owner {
                uid: id(&["-u", user])?,
                gid: id(&["-g", user])?,
            })
        })
    }

    /// The temporary directory, if the owner can reach into it (a private
    /// `TMPDIR` of root's is no place for a cluster run by another user),
    /// else `/tmp`.
    fn temp_dir(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir();
        let reachable = dir
            .ancestors()
            .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
        if reachable {
            dir
        } else {
            PathBuf::from("/tmp")
        }
    }
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}
