//! The event-handler runner (`peermesh::io::handlers`), driven by a small mio loop of its own
//! as the daemon drives it: shell scripts in a temporary directory stand for handlers and
//! leave what they saw in files there.
//!
//! Every wait is on readiness (or the runner's own timeout) and bounded in turns and time;
//! the scripts sleep where a handler would take time, the tests never sleep to synchronise.

use mio::{Events, Poll, Token};
use peermesh::io::handlers::{
    check_program, Admission, HandlerError, HandlerJob, HandlerLimits, Handlers,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Held (shared) by every call that may start a handler, and (alone) while a script is
/// written: see [`TempDir::script`].
static SPAWNS: RwLock<()> = RwLock::new(());

fn spawning() -> std::sync::RwLockReadGuard<'static, ()> {
    SPAWNS.read().unwrap_or_else(|e| e.into_inner())
}

/// A fresh directory under the system's temporary directory, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "peermesh-handlers-{}-{test}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// An executable `#!/bin/sh` script called `name` with `body`, in which `$DIR` is this
    /// directory.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.0.join(name);
        let text = format!("#!/bin/sh\nDIR='{}'\n{body}\n", self.0.display());
        // No other test may fork while the file is open for writing: the child would hold
        // it open until its exec, and running the script then fails (ETXTBSY).
        let _alone = SPAWNS.write().unwrap_or_else(|e| e.into_inner());
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.0.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What a test's loop collected: the responses of finished queries, by query number.
type Responses = Vec<(u64, Vec<u8>, bool)>;

/// The runner in a mio loop of its own.
struct Lab {
    poll: Poll,
    events: Events,
    handlers: Handlers<u64>,
    responses: Responses,
}

const FIRST: Token = Token(10);

impl Lab {
    fn new(program: &Path, limits: HandlerLimits) -> Lab {
        let poll = Poll::new().unwrap();
        let mut handlers = Handlers::new(program.to_path_buf(), limits, "alpha")
            .with_env("PEERMESH_CONTROL", "/run/peermesh/test.sock");
        handlers.register(poll.registry(), FIRST).unwrap();
        Lab {
            poll,
            events: Events::with_capacity(64),
            handlers,
            responses: Vec::new(),
        }
    }

    fn run(&mut self, job: HandlerJob<u64>) -> Admission {
        let admission = {
            let _spawning = spawning();
            self.handlers.run(self.poll.registry(), job)
        };
        self.collect();
        admission
    }

    fn collect(&mut self) {
        while let Some(response) = self.handlers.poll_response() {
            self.responses.push(response);
        }
    }

    /// Turns the loop until `done` holds (checked after every turn), for at most `limit`
    /// and 10,000 turns; `check` runs after every turn too (for invariants). Panics on
    /// time-out with `what`.
    fn until(
        &mut self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut(&Handlers<u64>),
        mut done: impl FnMut(&Handlers<u64>, &Responses) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        for _ in 0..10_000 {
            if done(&self.handlers, &self.responses) {
                return;
            }
            let now = Instant::now();
            assert!(now < deadline, "not within {limit:?}: {what}");
            let wake = self
                .handlers
                .poll_timeout()
                .map_or(deadline, |at| at.min(deadline));
            let timeout = wake.saturating_duration_since(now);
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("poll: {e}"),
            }
            // Both may start queued jobs.
            let spawning = spawning();
            for event in self.events.iter() {
                assert!(self.handlers.owns(event.token()), "{:?}", event.token());
                self.handlers.handle_event(self.poll.registry(), event);
            }
            self.handlers
                .handle_timeout(self.poll.registry(), Instant::now());
            drop(spawning);
            self.collect();
            check(&self.handlers);
        }
        panic!("not within 10,000 turns: {what}");
    }

    /// Turns the loop until nothing runs or waits.
    fn until_idle(&mut self, limit: Duration) {
        self.until(
            "every run ended",
            limit,
            |_| {},
            |h, _| h.running() == 0 && h.queued() == 0,
        );
    }
}

fn job(event: &str, payload: &[u8], query: Option<u64>) -> HandlerJob<u64> {
    HandlerJob {
        event: event.to_string(),
        peer: Some("beta".to_string()),
        env: Vec::new(),
        payload: payload.to_vec(),
        query,
    }
}

/// 64 KiB that are not all alike, more than a pipe holds at once.
fn big_payload() -> Vec<u8> {
    (0..65_536u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// Process `pid`'s state letter (`R`, `S`, `Z`, ...) and whether it is exiting
/// (`PF_EXITING`, set once it was killed and is closing its files); `None` once it is gone.
fn process_state(pid: u32) -> Option<(char, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces:
    // state, ppid, pgrp, session, tty, tpgid, flags.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let flags: u64 = fields.get(6)?.parse().ok()?;
    const PF_EXITING: u64 = 0x4;
    Some((state, flags & PF_EXITING != 0))
}

// ---- What the handler is given --------------------------------------------------------------

#[test]
fn the_environment_and_stdin_reach_the_handler() {
    let dir = TempDir::new("env");
    let script = dir.script(
        "handler",
        r#"env | grep '^PEERMESH_' | sort > "$DIR/env.$PEERMESH_EVENT"
cat > "$DIR/stdin.$PEERMESH_EVENT""#,
    );
    let mut lab = Lab::new(&script, HandlerLimits::default());
    let payload = big_payload();
    let mut message = job("message", &payload, None);
    message.env = vec![
        ("PEERMESH_ID".into(), "42".into()),
        ("PEERMESH_DATA_BYTES".into(), payload.len().to_string()),
        // Neither may replace what the runner sets, nor break the environment.
        ("PEERMESH_EVENT".into(), "forged".into()),
        ("BAD=NAME".into(), "x".into()),
        ("PEERMESH_NUL".into(), "a\0b".into()),
    ];
    assert_eq!(lab.run(message), Admission::Started);
    let mut up = job("up", b"", None);
    up.peer = None;
    assert_eq!(lab.run(up), Admission::Started);
    lab.until_idle(Duration::from_secs(10));

    assert_eq!(
        dir.read("env.message"),
        "PEERMESH_CONTROL=/run/peermesh/test.sock\n\
         PEERMESH_DATA_BYTES=65536\n\
         PEERMESH_EVENT=message\n\
         PEERMESH_ID=42\n\
         PEERMESH_NODE=alpha\n\
         PEERMESH_PEER=beta\n"
    );
    let stdin = fs::read(dir.path().join("stdin.message")).unwrap();
    assert!(
        stdin == payload,
        "stdin: {} bytes, not the payload",
        stdin.len()
    );
    // No peer: no PEERMESH_PEER; no payload: stdin is empty.
    assert_eq!(
        dir.read("env.up"),
        "PEERMESH_CONTROL=/run/peermesh/test.sock\nPEERMESH_EVENT=up\nPEERMESH_NODE=alpha\n"
    );
    assert_eq!(dir.read("stdin.up"), "");
    let stats = lab.handlers.stats();
    assert_eq!((stats.started, stats.succeeded, stats.failed), (2, 2, 0));
    assert!(lab.responses.is_empty(), "{:?}", lab.responses);
}

// ---- Queries: stdout is the response ----------------------------------------------------------

#[test]
fn a_query_handlers_stdout_is_the_response() {
    let dir = TempDir::new("query");
    // Echoes its input while it is still being written: both pipes are full at times.
    let script = dir.script("handler", "printf 'pong:'; cat");
    let mut lab = Lab::new(&script, HandlerLimits::default());
    // With the 5 bytes of `pong:`, exactly the 64 KiB a response may have.
    let payload = &big_payload()[5..];
    lab.run(job("query", payload, Some(7)));
    lab.run(job("query", b"uptime", Some(8)));
    lab.until_idle(Duration::from_secs(10));
    lab.responses.sort();
    let [(7, first, false), (8, second, false)] = &lab.responses[..] else {
        panic!("{:?}", lab.responses)
    };
    assert_eq!(first.len(), 65_536);
    assert!(
        first[..5] == *b"pong:" && first[5..] == *payload,
        "not an echo"
    );
    assert_eq!(second, b"pong:uptime");
}

#[test]
fn stdout_past_the_limit_is_cut_to_it() {
    let dir = TempDir::new("cut");
    let script = dir.script("handler", "head -c 200000 /dev/zero");
    let mut lab = Lab::new(&script, HandlerLimits::default());
    lab.run(job("query", b"", Some(1)));
    lab.until_idle(Duration::from_secs(10));
    let [(1, response, false)] = &lab.responses[..] else {
        panic!("{:?}", lab.responses)
    };
    assert_eq!(response.len(), 65_536);
}

#[test]
fn a_non_zero_exit_is_an_error_response_with_the_end_of_stderr() {
    let dir = TempDir::new("exit");
    let script = dir.script(
        "handler",
        r#"case "$PEERMESH_EVENT" in
  quiet) exit 4 ;;
  *) echo "looking for the database" >&2; echo "no such database: $(cat)" >&2; exit 3 ;;
esac"#,
    );
    let mut lab = Lab::new(&script, HandlerLimits::default());
    lab.run(job("query", b"orders", Some(1)));
    lab.run(job("quiet", b"", Some(2)));
    lab.until_idle(Duration::from_secs(10));
    lab.responses.sort();
    let [(1, loud, true), (2, quiet, true)] = &lab.responses[..] else {
        panic!("{:?}", lab.responses)
    };
    assert_eq!(
        String::from_utf8_lossy(loud),
        "looking for the database\nno such database: orders"
    );
    assert_eq!(
        String::from_utf8_lossy(quiet),
        "the event handler ended with exit status 4"
    );
    assert_eq!(lab.handlers.stats().failed, 2);
}

#[test]
fn a_handler_that_does_not_read_its_input_is_no_trouble() {
    let dir = TempDir::new("noread");
    let script = dir.script("handler", "echo done");
    let mut lab = Lab::new(&script, HandlerLimits::default());
    lab.run(job("query", &big_payload(), Some(1)));
    lab.until_idle(Duration::from_secs(10));
    assert_eq!(lab.responses, [(1, b"done\n".to_vec(), false)]);
}

// ---- Time limit, reaping ------------------------------------------------------------------------

#[test]
fn a_handler_past_its_time_limit_is_killed_with_what_it_started_and_reaped() {
    let dir = TempDir::new("slow");
    let script = dir.script(
        "handler",
        r#"echo $$ > "$DIR/pid.tmp" && mv "$DIR/pid.tmp" "$DIR/pid"
sleep 30 &
echo $! > "$DIR/child.tmp" && mv "$DIR/child.tmp" "$DIR/child"
sleep 30"#,
    );
    let limits = HandlerLimits {
        time_limit: Duration::from_millis(300),
        ..HandlerLimits::default()
    };
    let mut lab = Lab::new(&script, limits);
    let started = Instant::now();
    lab.run(job("query", b"", Some(1)));
    lab.until_idle(Duration::from_secs(10));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let [(1, why, true)] = &lab.responses[..] else {
        panic!("{:?}", lab.responses)
    };
    assert!(
        String::from_utf8_lossy(why).contains("took longer than 300ms and was killed"),
        "{}",
        String::from_utf8_lossy(why)
    );
    let stats = lab.handlers.stats();
    assert_eq!((stats.killed, stats.failed), (1, 1));
    // The handler was reaped: no zombie of ours.
    let pid: u32 = dir.read("pid").trim().parse().unwrap();
    assert_eq!(process_state(pid), None, "handler pid {pid} is still there");
    // Its child is not ours to reap (init does), but it is dead, or dying: it has closed
    // stderr, whose end ended the run, which it does only on its way out.
    let child: u32 = dir.read("child").trim().parse().unwrap();
    let state = process_state(child);
    assert!(
        matches!(state, None | Some(('Z' | 'X', _)) | Some((_, true))),
        "its child {child} is {state:?}"
    );
}

#[test]
fn a_handler_whose_child_keeps_its_pipes_open_ends_at_the_time_limit() {
    let dir = TempDir::new("leftover");
    let script = dir.script("handler", "sleep 30 & echo started");
    let limits = HandlerLimits {
        time_limit: Duration::from_millis(300),
        ..HandlerLimits::default()
    };
    let mut lab = Lab::new(&script, limits);
    lab.run(job("query", b"", Some(1)));
    lab.until_idle(Duration::from_secs(10));
    let [(1, _, true)] = &lab.responses[..] else {
        panic!("{:?}", lab.responses)
    };
    assert_eq!(lab.handlers.stats().killed, 1);
}

#[test]
fn every_run_is_reaped_even_with_stdout_closed_early() {
    let dir = TempDir::new("reap");
    // Closes stdout and stderr, then lives on a little: only SIGCHLD says when it ends.
    let script = dir.script(
        "handler",
        r#"echo $$ >> "$DIR/pids"; exec >&- 2>&-; sleep 0.2"#,
    );
    let mut lab = Lab::new(&script, HandlerLimits::default());
    for i in 0..4 {
        lab.run(job("query", b"", Some(i)));
    }
    lab.until_idle(Duration::from_secs(10));
    assert_eq!(lab.responses.len(), 4);
    assert!(lab
        .responses
        .iter()
        .all(|(_, r, error)| r.is_empty() && !error));
    for pid in dir.read("pids").lines() {
        let pid: u32 = pid.parse().unwrap();
        assert_eq!(process_state(pid), None, "pid {pid} not reaped");
    }
}

// ---- Concurrency and the queue ----------------------------------------------------------------

#[test]
fn no_more_than_max_running_run_at_once_and_the_rest_wait() {
    let dir = TempDir::new("concurrency");
    // Each run counts the runs going (including itself) while it lives.
    let script = dir.script(
        "handler",
        r#"touch "$DIR/run.$$"
ls "$DIR" | grep -c '^run\.' >> "$DIR/counts"
sleep 0.1
rm "$DIR/run.$$""#,
    );
    let limits = HandlerLimits {
        max_running: 2,
        ..HandlerLimits::default()
    };
    let mut lab = Lab::new(&script, limits);
    let admissions: Vec<Admission> = (0..6).map(|_| lab.run(job("up", b"", None))).collect();
    use Admission::*;
    assert_eq!(
        admissions,
        [Started, Started, Queued, Queued, Queued, Queued]
    );
    assert_eq!((lab.handlers.running(), lab.handlers.queued()), (2, 4));
    let mut most = 0;
    lab.until(
        "six runs",
        Duration::from_secs(20),
        |h| {
            assert!(h.running() <= 2, "{} running", h.running());
            most = most.max(h.running());
        },
        |h, _| h.stats().succeeded == 6,
    );
    assert_eq!(most, 2);
    let counts: Vec<usize> = dir
        .read("counts")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 6, "{counts:?}");
    assert!(counts.iter().all(|&c| (1..=2).contains(&c)), "{counts:?}");
}

#[test]
fn past_the_queue_jobs_are_dropped_counted_and_queries_told_at_once() {
    let dir = TempDir::new("overflow");
    let script = dir.script("handler", "sleep 0.1; echo ok");
    let limits = HandlerLimits {
        max_running: 1,
        max_queued: 2,
        ..HandlerLimits::default()
    };
    let mut lab = Lab::new(&script, limits);
    let admissions: Vec<Admission> = (0..5)
        .map(|i| lab.run(job("query", b"", Some(i))))
        .collect();
    use Admission::*;
    assert_eq!(admissions, [Started, Queued, Queued, Dropped, Dropped]);
    assert_eq!(lab.handlers.stats().dropped, 2);
    // The dropped queries are answered before anything else ends.
    let dropped: Vec<u64> = lab.responses.iter().map(|r| r.0).collect();
    assert_eq!(dropped, [3, 4]);
    assert!(lab
        .responses
        .iter()
        .all(|(_, why, error)| *error && String::from_utf8_lossy(why).contains("queue is full")));
    lab.until_idle(Duration::from_secs(10));
    let answered: Vec<(u64, Vec<u8>, bool)> = lab.responses[2..].to_vec();
    assert_eq!(
        answered,
        (0..3)
            .map(|i| (i, b"ok\n".to_vec(), false))
            .collect::<Vec<_>>()
    );
    // With room again, a job runs.
    assert_eq!(lab.run(job("query", b"", Some(9))), Started);
    lab.until_idle(Duration::from_secs(10));
    assert_eq!(lab.handlers.stats().dropped, 2);
}

// ---- A handler that cannot be run ----------------------------------------------------------------

#[test]
fn a_missing_or_non_executable_handler_drops_jobs_and_the_node_goes_on() {
    let dir = TempDir::new("missing");
    let missing = dir.path().join("no-such-handler");
    let not_executable = dir.path().join("not-executable");
    {
        let _alone = SPAWNS.write().unwrap_or_else(|e| e.into_inner());
        fs::write(&not_executable, "#!/bin/sh\necho hi\n").unwrap();
    }
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).unwrap();

    assert!(matches!(
        check_program(&missing),
        Err(HandlerError::Io { .. })
    ));
    assert!(matches!(
        check_program(&not_executable),
        Err(HandlerError::NotExecutable { .. })
    ));
    assert!(matches!(
        check_program(dir.path()),
        Err(HandlerError::NotAFile { .. })
    ));
    let message = check_program(&not_executable).unwrap_err().to_string();
    assert!(
        message.contains("not executable (chmod +x it)"),
        "{message}"
    );

    for program in [&missing, &not_executable] {
        let mut lab = Lab::new(program, HandlerLimits::default());
        for i in 0..3 {
            assert_eq!(lab.run(job("query", b"x", Some(i))), Admission::Dropped);
        }
        assert_eq!(lab.run(job("up", b"", None)), Admission::Dropped);
        assert_eq!(lab.handlers.running(), 0);
        assert_eq!(lab.handlers.stats().dropped, 4);
        assert_eq!(lab.responses.len(), 3);
        assert!(lab.responses.iter().all(
            |(_, why, error)| *error && String::from_utf8_lossy(why).contains("cannot be run")
        ));
        assert_eq!(lab.handlers.poll_timeout(), None);
    }

    // Made executable, it runs from the next event on.
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o755)).unwrap();
    let mut lab = Lab::new(&not_executable, HandlerLimits::default());
    assert_eq!(lab.run(job("query", b"", Some(1))), Admission::Started);
    lab.until_idle(Duration::from_secs(10));
    assert_eq!(lab.responses, [(1, b"hi\n".to_vec(), false)]);
}

// ---- stderr goes to the log -------------------------------------------------------------------

/// Every log line of this test binary, for the test below.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Collect;

impl log::Log for Collect {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {}", record.level(), record.args());
        LOGGED.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

#[test]
fn stderr_lines_are_logged_with_pid_and_event_up_to_the_limit() {
    static LOGGER: Collect = Collect;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Debug);
    let dir = TempDir::new("stderr");
    let script = dir.script(
        "handler",
        r#"echo $$ > "$DIR/pid"
head -c 3000 /dev/zero | tr '\0' x >&2; echo >&2
i=1; while [ $i -le 40 ]; do echo "line $i" >&2; i=$((i + 1)); done
printf 'no newline at the end' >&2"#,
    );
    let limits = HandlerLimits {
        max_log_lines: 5,
        ..HandlerLimits::default()
    };
    let mut lab = Lab::new(&script, limits);
    lab.run(job("stderr-test", b"", None));
    lab.until_idle(Duration::from_secs(10));
    let pid = dir.read("pid").trim().to_string();
    let prefix = format!("event handler pid {pid} (stderr-test event): ");
    let ours: Vec<String> = LOGGED
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&prefix))
        .cloned()
        .collect();
    // A line over 1 KiB is cut; 42 lines, 5 logged.
    let long = format!("INFO {prefix}{} […]", "x".repeat(1024));
    let expected: Vec<String> = [long]
        .into_iter()
        .chain((1..=4).map(|i| format!("INFO {prefix}line {i}")))
        .chain([format!("INFO {prefix}37 more lines of stderr not logged")])
        .collect();
    assert_eq!(ours, expected);
}
