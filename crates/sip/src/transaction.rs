//! The RFC 3261 §17 transaction state machines (with RFC 6026's Accepted
//! state), sans I/O: each machine is fed events and answers with a [`Step`]
//! saying what to send, which timers to arm and what to tell the
//! transaction user. The owner keeps the message bytes and the timers.

use std::time::Duration;

/// T1, T2 and T4 of RFC 3261 §17.1.1.1 (configurable: tests shorten them).
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// RFC 3261's timer names (L and M from RFC 6026).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Timer {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
}

/// What a transaction asks its owner to do after an event.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Step {
    /// (Re)send the transaction's current message (request or last response).
    pub send: bool,
    /// (Re)send the ACK for a non-2xx final response (client INVITE).
    pub send_ack: bool,
    pub arm: [Option<(Timer, Duration)>; 2],
    /// Pass the response (client) up to the transaction user.
    pub deliver: bool,
    /// The transaction failed for want of an answer (Timer B, F, H or L).
    pub timeout: bool,
    pub terminated: bool,
}

impl Step {
    fn arm(mut self, timer: Timer, after: Duration) -> Step {
        if self.arm[0].is_none() {
            self.arm[0] = Some((timer, after));
        } else {
            self.arm[1] = Some((timer, after));
        }
        self
    }

    fn send() -> Step {
        Step {
            send: true,
            ..Step::default()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// Client INVITE transaction (§17.1.1, RFC 6026 §7.2).
#[derive(Clone, Debug)]
pub struct ClientInvite {
    pub state: State,
    reliable: bool,
    interval: Duration,
}

impl ClientInvite {
    /// The INVITE is sent now.
    pub fn start(reliable: bool, t: &Timers) -> (ClientInvite, Step) {
        let mut step = Step::send().arm(Timer::B, t.t1x64());
        if !reliable {
            step = step.arm(Timer::A, t.t1);
        }
        let tx = ClientInvite {
            state: State::Calling,
            reliable,
            interval: t.t1,
        };
        (tx, step)
    }

    pub fn on_response(&mut self, code: u16, t: &Timers) -> Step {
        match (self.state, code) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                Step {
                    deliver: true,
                    ..Step::default()
                }
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                Step {
                    deliver: true,
                    ..Step::default()
                }
                .arm(Timer::M, t.t1x64())
            }
            // A retransmitted 2xx goes to the TU, which re-sends its ACK.
            (State::Accepted, 200..=299) => Step {
                deliver: true,
                ..Step::default()
            },
            (State::Calling | State::Proceeding, 300..) => {
                self.state = State::Completed;
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    Duration::from_secs(32)
                };
                Step {
                    deliver: true,
                    send_ack: true,
                    ..Step::default()
                }
                .arm(Timer::D, wait)
            }
            (State::Completed, 300..) => Step {
                send_ack: true,
                ..Step::default()
            },
            _ => Step::default(),
        }
    }

    pub fn on_timer(&mut self, timer: Timer, t: &Timers) -> Step {
        match (self.state, timer) {
            (State::Calling, Timer::A) => {
                self.interval *= 2;
                Step::send().arm(Timer::A, self.interval.min(t.t1x64()))
            }
            (State::Calling, Timer::B) => self.terminate(true),
            (State::Completed, Timer::D) | (State::Accepted, Timer::M) => self.terminate(false),
            _ => Step::default(),
        }
    }

    fn terminate(&mut self, timeout: bool) -> Step {
        self.state = State::Terminated;
        Step {
            timeout,
            terminated: true,
            ..Step::default()
        }
    }
}

/// Client non-INVITE transaction (§17.1.2).
#[derive(Clone, Debug)]
pub struct ClientNonInvite {
    pub state: State,
    reliable: bool,
    interval: Duration,
}

impl ClientNonInvite {
    pub fn start(reliable: bool, t: &Timers) -> (ClientNonInvite, Step) {
        let mut step = Step::send().arm(Timer::F, t.t1x64());
        if !reliable {
            step = step.arm(Timer::E, t.t1);
        }
        let tx = ClientNonInvite {
            state: State::Trying,
            reliable,
            interval: t.t1,
        };
        (tx, step)
    }

    pub fn on_response(&mut self, code: u16, t: &Timers) -> Step {
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                Step {
                    deliver: true,
                    ..Step::default()
                }
            }
            (State::Trying | State::Proceeding, 200..) => {
                self.state = State::Completed;
                let wait = if self.reliable { Duration::ZERO } else { t.t4 };
                Step {
                    deliver: true,
                    ..Step::default()
                }
                .arm(Timer::K, wait)
            }
            _ => Step::default(),
        }
    }

    pub fn on_timer(&mut self, timer: Timer, t: &Timers) -> Step {
        match (self.state, timer) {
            (State::Trying, Timer::E) => {
                self.interval = (self.interval * 2).min(t.t2);
                Step::send().arm(Timer::E, self.interval)
            }
            (State::Proceeding, Timer::E) => Step::send().arm(Timer::E, t.t2),
            (State::Trying | State::Proceeding, Timer::F) => {
                self.state = State::Terminated;
                Step {
                    timeout: true,
                    terminated: true,
                    ..Step::default()
                }
            }
            (State::Completed, Timer::K) => {
                self.state = State::Terminated;
                Step {
                    terminated: true,
                    ..Step::default()
                }
            }
            _ => Step::default(),
        }
    }
}

/// Server INVITE transaction (§17.2.1, RFC 6026 §7.1). In the Accepted
/// state it also retransmits the 2xx until the TU reports the ACK
/// (§13.3.1.4), so the B2BUA keeps that duty in one place.
#[derive(Clone, Debug)]
pub struct ServerInvite {
    pub state: State,
    reliable: bool,
    interval: Duration,
    acked: bool,
}

impl ServerInvite {
    /// The INVITE arrived; the owner sends `100 Trying` at once.
    pub fn new(reliable: bool, t: &Timers) -> ServerInvite {
        ServerInvite {
            state: State::Proceeding,
            reliable,
            interval: t.t1,
            acked: false,
        }
    }

    /// The same INVITE again: re-send the last response, if any is due.
    pub fn on_retransmission(&self) -> Step {
        match self.state {
            State::Proceeding | State::Completed => Step::send(),
            _ => Step::default(),
        }
    }

    /// The TU responds; the owner has stored the response as the current
    /// message. A response after a final one is refused (`None`).
    pub fn respond(&mut self, code: u16, t: &Timers) -> Option<Step> {
        if self.state != State::Proceeding {
            return None;
        }
        Some(match code {
            100..=199 => Step::send(),
            200..=299 => {
                self.state = State::Accepted;
                self.interval = t.t1;
                Step::send().arm(Timer::L, t.t1x64()).arm(Timer::G, t.t1)
            }
            _ => {
                self.state = State::Completed;
                self.interval = t.t1;
                let step = Step::send().arm(Timer::H, t.t1x64());
                if self.reliable {
                    step
                } else {
                    step.arm(Timer::G, t.t1)
                }
            }
        })
    }

    /// An ACK matched this transaction (a non-2xx was answered).
    pub fn on_ack(&mut self, t: &Timers) -> Step {
        if self.state != State::Completed {
            return Step::default();
        }
        self.state = State::Confirmed;
        let wait = if self.reliable { Duration::ZERO } else { t.t4 };
        Step::default().arm(Timer::I, wait)
    }

    /// The TU saw the ACK for the 2xx: stop retransmitting it.
    pub fn acked_2xx(&mut self) {
        self.acked = true;
    }

    pub fn is_acked(&self) -> bool {
        self.acked
    }

    pub fn on_timer(&mut self, timer: Timer, t: &Timers) -> Step {
        match (self.state, timer) {
            (State::Completed, Timer::G) | (State::Accepted, Timer::G) if !self.acked => {
                self.interval = (self.interval * 2).min(t.t2);
                Step::send().arm(Timer::G, self.interval)
            }
            (State::Completed, Timer::H) => {
                self.state = State::Terminated;
                Step {
                    timeout: true,
                    terminated: true,
                    ..Step::default()
                }
            }
            (State::Confirmed, Timer::I) => {
                self.state = State::Terminated;
                Step {
                    terminated: true,
                    ..Step::default()
                }
            }
            (State::Accepted, Timer::L) => {
                self.state = State::Terminated;
                Step {
                    // A 2xx never ACKed: the TU must end the session.
                    timeout: !self.acked,
                    terminated: true,
                    ..Step::default()
                }
            }
            _ => Step::default(),
        }
    }
}

/// Server non-INVITE transaction (§17.2.2).
#[derive(Clone, Debug)]
pub struct ServerNonInvite {
    pub state: State,
    reliable: bool,
}

impl ServerNonInvite {
    pub fn new(reliable: bool) -> ServerNonInvite {
        ServerNonInvite {
            state: State::Trying,
            reliable,
        }
    }

    pub fn on_retransmission(&self) -> Step {
        match self.state {
            State::Proceeding | State::Completed => Step::send(),
            _ => Step::default(),
        }
    }

    pub fn respond(&mut self, code: u16, t: &Timers) -> Option<Step> {
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                Some(Step::send())
            }
            (State::Trying | State::Proceeding, _) => {
                self.state = State::Completed;
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    t.t1x64()
                };
                Some(Step::send().arm(Timer::J, wait))
            }
            _ => None,
        }
    }

    pub fn on_timer(&mut self, timer: Timer) -> Step {
        if (self.state, timer) == (State::Completed, Timer::J) {
            self.state = State::Terminated;
            return Step {
                terminated: true,
                ..Step::default()
            };
        }
        Step::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives a machine on a virtual clock: returns the times at which it
    /// sent, and the time it terminated with (timeout?) flag.
    fn run<M>(
        start: Step,
        machine: &mut M,
        mut on_timer: impl FnMut(&mut M, Timer) -> Step,
    ) -> (Vec<Duration>, Option<(Duration, bool)>) {
        let mut now = Duration::ZERO;
        let mut timers: Vec<(Duration, Timer)> = Vec::new();
        let mut sends = Vec::new();
        let apply = |step: Step, now: Duration, timers: &mut Vec<_>, sends: &mut Vec<_>| {
            if step.send {
                sends.push(now);
            }
            for (t, after) in step.arm.into_iter().flatten() {
                timers.push((now + after, t));
            }
            step.terminated.then_some((now, step.timeout))
        };
        apply(start, now, &mut timers, &mut sends);
        while !timers.is_empty() {
            timers.sort_by_key(|(at, _)| *at);
            let (at, t) = timers.remove(0);
            now = at;
            let step = on_timer(machine, t);
            if let Some(end) = apply(step, now, &mut timers, &mut sends) {
                return (sends, Some(end));
            }
        }
        (sends, None)
    }

    #[test]
    fn client_invite_over_udp_retransmits_on_a_and_times_out_on_b() {
        let t = Timers::default();
        let (mut tx, step) = ClientInvite::start(false, &t);
        let (sends, end) = run(step, &mut tx, |m, timer| m.on_timer(timer, &t));
        // Sent at 0 and retransmitted at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
        let expected: Vec<_> = [0, 500, 1500, 3500, 7500, 15500, 31500]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(sends, expected);
        assert_eq!(end, Some((ms(32_000), true)));
    }

    #[test]
    fn client_invite_over_tcp_never_retransmits() {
        let t = Timers::default();
        let (mut tx, step) = ClientInvite::start(true, &t);
        let (sends, end) = run(step, &mut tx, |m, timer| m.on_timer(timer, &t));
        assert_eq!(sends, [ms(0)]);
        assert_eq!(end, Some((ms(32_000), true)));
    }

    #[test]
    fn client_invite_provisional_stops_retransmission_and_timer_b() {
        let t = Timers::default();
        let (mut tx, _) = ClientInvite::start(false, &t);
        assert!(tx.on_response(180, &t).deliver);
        assert_eq!(tx.on_timer(Timer::A, &t), Step::default());
        assert_eq!(tx.on_timer(Timer::B, &t), Step::default());
        assert_eq!(tx.state, State::Proceeding);
    }

    #[test]
    fn client_invite_failure_is_acked_and_absorbed() {
        let t = Timers::default();
        let (mut tx, _) = ClientInvite::start(false, &t);
        let step = tx.on_response(486, &t);
        assert!(step.deliver && step.send_ack);
        assert_eq!(step.arm[0], Some((Timer::D, Duration::from_secs(32))));
        // A retransmitted 486 is ACKed again but not delivered again.
        let again = tx.on_response(486, &t);
        assert!(again.send_ack && !again.deliver);
        assert!(tx.on_timer(Timer::D, &t).terminated);
    }

    #[test]
    fn client_invite_2xx_is_accepted_and_retransmissions_reach_the_tu() {
        let t = Timers::default();
        let (mut tx, _) = ClientInvite::start(false, &t);
        let step = tx.on_response(200, &t);
        assert!(step.deliver && !step.send_ack);
        assert_eq!(tx.state, State::Accepted);
        assert!(tx.on_response(200, &t).deliver);
        assert!(!tx.on_response(486, &t).deliver);
        let end = tx.on_timer(Timer::M, &t);
        assert!(end.terminated && !end.timeout);
    }

    #[test]
    fn client_non_invite_backs_off_to_t2_and_times_out_on_f() {
        let t = Timers::default();
        let (mut tx, step) = ClientNonInvite::start(false, &t);
        let (sends, end) = run(step, &mut tx, |m, timer| m.on_timer(timer, &t));
        let expected: Vec<_> = [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(ms)
        .collect();
        assert_eq!(sends, expected);
        assert_eq!(end, Some((ms(32_000), true)));
    }

    #[test]
    fn client_non_invite_completes_and_waits_t4_on_udp_only() {
        let t = Timers::default();
        let (mut tx, _) = ClientNonInvite::start(false, &t);
        let step = tx.on_response(200, &t);
        assert!(step.deliver);
        assert_eq!(step.arm[0], Some((Timer::K, t.t4)));
        assert!(!tx.on_response(200, &t).deliver);
        let (mut tcp, _) = ClientNonInvite::start(true, &t);
        assert_eq!(
            tcp.on_response(200, &t).arm[0],
            Some((Timer::K, Duration::ZERO))
        );
    }

    #[test]
    fn server_invite_failure_retransmits_on_g_until_h() {
        let t = Timers::default();
        let mut tx = ServerInvite::new(false, &t);
        assert!(tx.on_retransmission().send);
        let step = tx.respond(486, &t).unwrap();
        assert!(tx.respond(200, &t).is_none());
        let (sends, end) = run(step, &mut tx, |m, timer| m.on_timer(timer, &t));
        let expected: Vec<_> = [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(ms)
        .collect();
        assert_eq!(sends, expected);
        assert_eq!(end, Some((ms(32_000), true)));
    }

    #[test]
    fn server_invite_ack_confirms_and_stops_g() {
        let t = Timers::default();
        let mut tx = ServerInvite::new(false, &t);
        tx.respond(404, &t).unwrap();
        let step = tx.on_ack(&t);
        assert_eq!(step.arm[0], Some((Timer::I, t.t4)));
        assert_eq!(tx.on_timer(Timer::G, &t), Step::default());
        assert_eq!(tx.on_timer(Timer::H, &t), Step::default());
        let end = tx.on_timer(Timer::I, &t);
        assert!(end.terminated && !end.timeout);
        // A retransmitted INVITE after the ACK is absorbed.
        assert!(!tx.on_retransmission().send);
    }

    #[test]
    fn server_invite_2xx_is_retransmitted_until_acked() {
        let t = Timers::default();
        let mut tx = ServerInvite::new(true, &t);
        let step = tx.respond(200, &t).unwrap();
        assert!(step.send);
        assert!(tx.on_timer(Timer::G, &t).send);
        tx.acked_2xx();
        assert!(!tx.on_timer(Timer::G, &t).send);
        let end = tx.on_timer(Timer::L, &t);
        assert!(end.terminated && !end.timeout);
        // Not acked at all: the TU is told.
        let mut tx = ServerInvite::new(false, &t);
        tx.respond(200, &t).unwrap();
        assert!(tx.on_timer(Timer::L, &t).timeout);
    }

    #[test]
    fn server_non_invite_absorbs_retransmissions_until_j() {
        let t = Timers::default();
        let mut tx = ServerNonInvite::new(false);
        assert!(!tx.on_retransmission().send);
        let step = tx.respond(200, &t).unwrap();
        assert_eq!(step.arm[0], Some((Timer::J, t.t1 * 64)));
        assert!(tx.on_retransmission().send);
        assert!(tx.respond(200, &t).is_none());
        assert!(tx.on_timer(Timer::J).terminated);
        let mut tcp = ServerNonInvite::new(true);
        assert_eq!(
            tcp.respond(200, &t).unwrap().arm[0],
            Some((Timer::J, Duration::ZERO))
        );
    }
}
