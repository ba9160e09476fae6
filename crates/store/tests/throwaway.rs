//! The throwaway PostgreSQL cluster (`testing`, `MASKLINE_TEST_PG=throwaway`)
//! serves its process's tests and is gone once that process ends, however
//! it ends: normally, by a panic, by Ctrl-C, or by SIGKILL.
//!
//! Each case runs this test binary again as a child (only the
//! `child_process` function, told what to do by `CHILD_VAR`) with its own
//! temporary directory, and then looks for what the child's cluster left.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use maskline_store::testing;
use sqlx::Connection;

const CHILD_VAR: &str = "MASKLINE_THROWAWAY_CHILD";

/// How a child ends once its cluster answers.
#[derive(Clone, Copy, Debug)]
enum End {
    Exit,
    Panic,
    Interrupt,
    Kill,
}

/// Not a test of its own: the child's side of the cases below. Without
/// `CHILD_VAR` it has nothing to do.
#[test]
fn child_process() {
    let Ok(end) = std::env::var(CHILD_VAR) else {
        return;
    };
    let url = testing::server_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(one, 1);
    });
    println!("MASKLINE_URL={url}");
    // Until the parent has looked (and signalled, or closed our input).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    if end == "Panic" {
        panic!("a failing test");
    }
}

fn case(end: End) {
    let tmp = tempfile::tempdir().unwrap();
    // The cluster runs as another user when we are root: let it in.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, format!("{end:?}"))
        .env("MASKLINE_TEST_PG", "throwaway")
        .env_remove("MASKLINE_TEST_DATABASE_URL")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // Read all the child says (it must not write into a closed pipe).
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // libtest may have written on the same line before.
            if let Some((_, u)) = line.split_once("MASKLINE_URL=") {
                let _ = tx.send(u.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{end:?}: the child's cluster never answered"));
    let addr: SocketAddr = {
        let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        format!("{}:{}", opts.get_host(), opts.get_port())
            .parse()
            .unwrap()
    };
    assert_ne!(addr.port(), 5432, "a cluster of its own, not the machine's");
    let dirs = clusters_in(tmp.path());
    assert_eq!(dirs.len(), 1, "{end:?}: one cluster directory in TMPDIR");
    let signal = match end {
        End::Interrupt => Some("-INT"),
        End::Kill => Some("-KILL"),
        End::Exit | End::Panic => None,
    };
    let input = child.stdin.take();
    if let Some(signal) = signal {
        // The whole process group, as a terminal's Ctrl-C would.
        let group = format!("-{}", child.id());
        let status = Command::new("kill")
            .args([signal, "--", &group])
            .status()
            .unwrap();
        assert!(status.success());
    }
    drop(input);
    let status = child.wait().unwrap();
    match end {
        End::Exit => assert!(status.success(), "{status}"),
        _ => assert!(!status.success(), "{status}"),
    }
    // The guardian cleans up as the child's end closes its pipe.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let serving = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        let left = clusters_in(tmp.path());
        let processes = processes_naming(&tmp.path().display().to_string());
        if !serving && left.is_empty() && processes.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{end:?}: 20 s after the child ended: serving {serving}, \
             directories {left:?}, processes {processes:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn clusters_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.contains("maskline-pg-"))
        .collect()
}

/// Processes whose command line names `dir` (the guardian, postgres).
fn processes_naming(dir: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(dir))
        .collect()
}

#[test]
fn a_throwaway_cluster_is_gone_after_its_process_exits() {
    case(End::Exit);
}

#[test]
fn a_throwaway_cluster_is_gone_after_its_process_panics() {
    case(End::Panic);
}

#[test]
fn a_throwaway_cluster_is_gone_after_ctrl_c() {
    case(End::Interrupt);
}

#[test]
fn a_throwaway_cluster_is_gone_after_sigkill() {
    case(End::Kill);
}
