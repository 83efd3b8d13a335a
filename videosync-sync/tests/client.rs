//! The client session as a browser drives it: echo-proof player events,
//! bad input refused with a code and no change, and no panic on any
//! sequence of inputs.

// Helpers outside #[test] functions set up and drive the session; a
// failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use videosync_sync::client::{
    Output, PlayerAction, PlayerEvent, PlayerRead, Session, SessionConfig,
};
use videosync_sync::protocol::{
    Behind, ClientMessage, RoomPolicy, RoomSnapshot, ServerMessage, Stamped,
};
use videosync_sync::state::{Command, ErrorCode, MemberId, Playback, Waited};

const SERVER: f64 = 1_000_000.0;

fn playback(seq: u64, playing: bool, position_ms: f64, at_ms: f64) -> Playback {
    Playback {
        media: Some("v".into()),
        playing,
        position_ms,
        at_ms,
        rate: 1.0,
        seq,
    }
}

fn welcome(p: Playback) -> ServerMessage {
    ServerMessage::Welcome {
        v: 2,
        member: MemberId(7),
        room: Some(RoomSnapshot {
            seq: p.seq,
            playback: p,
            pending: Vec::new(),
            queue_total: 0,
            queue: Vec::new(),
            members: Vec::new(),
            members_total: None,
            waiting: Vec::new(),
            policy: RoomPolicy {
                behind: Behind::Skip,
                wait_timeout_ms: 0.0,
                start_ahead_ms: 0.0,
                start_timeout_ms: 5000.0,
            },
        }),
    }
}

fn read(at_ms: f64, position_ms: f64, playing: bool) -> PlayerRead {
    PlayerRead {
        at_ms,
        position_ms,
        rate: 1.0,
        playing,
        seeking: false,
        waiting: false,
        buffered_ahead_ms: Some(10_000.0),
    }
}

fn drain(s: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| s.poll()).collect()
}

/// A joined session: pinged, ponged (10 ms each way, local = server -
/// 995 000), welcomed into a paused room.
fn joined() -> Session {
    let mut s = Session::new(SessionConfig::default());
    s.on_player(read(0.0, 0.0, false)).unwrap();
    s.tick(0.0).unwrap();
    for i in 0..4 {
        let t = i as f64 * 100.0;
        s.tick(t).unwrap();
        let pings: Vec<u64> = drain(&mut s)
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(Stamped {
                    msg: ClientMessage::Ping { id },
                    ..
                }) => Some(id),
                _ => None,
            })
            .collect();
        for id in pings {
            let pong = ServerMessage::Pong {
                id,
                t0_ms: t,
                t1_ms: t + 10.0 + 995_000.0,
            };
            s.on_message(t + 20.0, &Stamped::new(t + 10.0 + 995_000.0, pong))
                .unwrap();
        }
    }
    s.on_message(
        500.0,
        &Stamped::new(995_490.0, welcome(playback(1, false, 0.0, 990_000.0))),
    )
    .unwrap();
    s.tick(500.0).unwrap();
    drain(&mut s);
    s
}

#[test]
fn its_own_actions_never_come_back_as_commands_and_the_users_do() {
    let mut s = joined();
    // A seek state; the session pauses and seeks.
    s.on_message(
        600.0,
        &Stamped::new(
            995_590.0,
            ServerMessage::State {
                playback: playback(2, false, 42_000.0, 995_700.0),
                cause: None,
            },
        ),
    )
    .unwrap();
    s.on_player(read(800.0, 0.0, false)).unwrap();
    s.tick(800.0).unwrap();
    let actions: Vec<PlayerAction> = drain(&mut s)
        .into_iter()
        .filter_map(|o| match o {
            Output::Player { action, .. } => Some(action),
            _ => None,
        })
        .collect();
    assert!(
        actions.contains(&PlayerAction::Seek {
            position_ms: 42_000.0
        }),
        "{actions:?}"
    );
    // Its `seeking` and `seeked` come back: not a command.
    let got = s
        .on_player_event(
            801.0,
            PlayerEvent::Seeking {
                position_ms: 42_000.0,
            },
        )
        .unwrap();
    assert_eq!(got, None);
    let got = s
        .on_player_event(
            880.0,
            PlayerEvent::Seeked {
                position_ms: 42_003.0,
            },
        )
        .unwrap();
    assert_eq!(got, None);
    assert!(drain(&mut s).is_empty());
    // The user seeks on the player: a command, based on the newest seq.
    let got = s
        .on_player_event(
            2_000.0,
            PlayerEvent::Seeking {
                position_ms: 90_000.0,
            },
        )
        .unwrap();
    assert_eq!(
        got,
        Some(Command::Seek {
            position_ms: 90_000.0
        })
    );
    let sent = drain(&mut s);
    assert!(
        matches!(
            &sent[..],
            [Output::Send(Stamped {
                msg: ClientMessage::Command {
                    based_on_seq: 2,
                    ..
                },
                sent_ms: 2_000.0
            })]
        ),
        "{sent:?}"
    );
    // A user's play and rate change too; a rate equal to the room's is not.
    assert_eq!(
        s.on_player_event(2_100.0, PlayerEvent::Play).unwrap(),
        Some(Command::Play)
    );
    assert_eq!(
        s.on_player_event(2_200.0, PlayerEvent::RateChange { rate: 1.0 })
            .unwrap(),
        None
    );
}

#[test]
fn bad_input_is_refused_with_a_code_and_changes_nothing() {
    let mut s = joined();
    s.on_player(read(850.0, 0.0, false)).unwrap();
    drain(&mut s);
    let before = format!("{s:?}");
    let cases: Vec<(ErrorCode, Result<(), videosync_sync::client::SessionError>)> = vec![
        (ErrorCode::InvalidValue, s.tick(f64::NAN)),
        (ErrorCode::InvalidValue, s.tick(-1.0)),
        (
            ErrorCode::InvalidValue,
            s.on_player(read(900.0, f64::NAN, true)),
        ),
        (
            ErrorCode::InvalidValue,
            s.on_player(read(900.0, -5.0, true)),
        ),
        (ErrorCode::Stale, s.on_player(read(100.0, 0.0, true))),
        (
            ErrorCode::Stale,
            s.on_message(
                900.0,
                &Stamped::new(
                    995_890.0,
                    ServerMessage::State {
                        playback: playback(1, true, 0.0, 995_900.0),
                        cause: None,
                    },
                ),
            ),
        ),
        (
            ErrorCode::InvalidValue,
            s.on_message(
                900.0,
                &Stamped::new(1.0, ServerMessage::Waiting { members: vec![] }),
            ),
        ),
        (
            ErrorCode::NotFound,
            s.on_message(
                900.0,
                &Stamped::new(
                    995_890.0,
                    ServerMessage::Pong {
                        id: 999,
                        t0_ms: 1.0,
                        t1_ms: 2.0,
                    },
                ),
            ),
        ),
        (
            ErrorCode::InvalidValue,
            s.on_message(
                900.0,
                &Stamped::new(f64::NAN, ServerMessage::Waiting { members: vec![] }),
            ),
        ),
        (
            ErrorCode::InvalidValue,
            s.on_message(
                900.0,
                &Stamped::new(
                    995_890.0,
                    ServerMessage::State {
                        playback: Playback {
                            rate: f64::INFINITY,
                            ..playback(9, true, 0.0, 1.0)
                        },
                        cause: None,
                    },
                ),
            ),
        ),
        (ErrorCode::InvalidValue, s.on_frame(-1.0, 900.0)),
        (ErrorCode::InvalidValue, s.set_output_latency(f64::NAN)),
        (
            ErrorCode::InvalidValue,
            s.on_player_event(f64::INFINITY, PlayerEvent::Play)
                .map(|_| ()),
        ),
    ];
    for (i, (code, got)) in cases.into_iter().enumerate() {
        assert_eq!(got.map_err(|e| e.code), Err(code), "case {i}");
    }
    assert_eq!(format!("{s:?}"), before, "a refusal changed the session");
}

#[test]
fn the_output_latency_trim_runs_the_player_ahead() {
    // With 100 ms of output latency, a playing room is heard in sync when
    // the player is 100 ms ahead of the timeline.
    let mut s = joined();
    s.set_output_latency(100.0).unwrap();
    s.on_message(
        600.0,
        &Stamped::new(
            995_590.0,
            ServerMessage::State {
                playback: playback(2, true, 10_000.0, 995_700.0),
                cause: None,
            },
        ),
    )
    .unwrap();
    let mut target = None;
    for i in 0..20 {
        let t = 600.0 + i as f64 * 50.0;
        s.on_player(read(t, 0.0, false)).unwrap();
        s.tick(t).unwrap();
        for o in drain(&mut s) {
            if let Output::Player {
                action: PlayerAction::Seek { position_ms },
                at_ms,
            } = o
            {
                target.get_or_insert((position_ms, at_ms));
            }
        }
    }
    let (position, at) = target.expect("a cued seek");
    // The cue aims at the timeline plus the allowance; the trim moves the
    // play instant 100 ms earlier, not the target.
    assert!(position > 10_000.0, "{position} at {at}");
}

#[test]
fn a_member_left_behind_keeps_its_lag_until_it_catches_up() {
    let mut s = Session::new(SessionConfig::default());
    assert_eq!(s.behind_ms(), 0.0);
    s.catch_up();
    assert_eq!(s.behind_ms(), 0.0);
    let _ = Waited {
        member: MemberId(1),
        deadline_ms: 0.0,
    };
}

fn any_input() -> impl Strategy<Value = (u8, f64, f64, u64)> {
    (
        0u8..8,
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-1.0),
            0.0..1e7f64,
            Just(1e15)
        ],
        prop_oneof![Just(f64::NAN), Just(-5.0), 0.0..1e6f64, Just(1e13)],
        0u64..6,
    )
}

proptest! {
    /// No sequence of inputs makes the session panic; a refused input
    /// changes nothing.
    #[test]
    fn no_input_sequence_panics_and_refusals_change_nothing(inputs in prop::collection::vec(any_input(), 1..80)) {
        let mut s = joined();
        for (kind, a, b, n) in inputs {
            let before = format!("{s:?}");
            let r = match kind {
                0 => s.tick(a),
                1 => s.on_player(PlayerRead { at_ms: a, position_ms: b, rate: 1.0, playing: n % 2 == 0, seeking: n == 3, waiting: n == 5, buffered_ahead_ms: None }),
                2 => s.on_message(a, &Stamped::new(b + SERVER, ServerMessage::State { playback: playback(n, n % 2 == 1, b, a + SERVER), cause: None })),
                3 => s.on_player_event(a, match n { 0 => PlayerEvent::Play, 1 => PlayerEvent::Pause, 2 => PlayerEvent::Seeked { position_ms: b }, 3 => PlayerEvent::RateChange { rate: b }, 4 => PlayerEvent::Seeking { position_ms: b }, _ => PlayerEvent::Playing }).map(|_| ()),
                4 => s.on_message(a, &Stamped::new(b, ServerMessage::Pong { id: n, t0_ms: a, t1_ms: b })),
                5 => s.on_frame(b, a),
                6 => s.on_message(a, &Stamped::new(b + SERVER, ServerMessage::Waiting { members: vec![Waited { member: MemberId(n), deadline_ms: b }] })),
                _ => s.on_message(a, &Stamped::new(b + SERVER, welcome(playback(n, true, b, a)))),
            };
            if r.is_err() {
                prop_assert_eq!(format!("{s:?}"), before);
            }
            while let Some(o) = s.poll() {
                if let Output::Player { action: PlayerAction::SetRate { rate }, .. } = o {
                    prop_assert!(rate.is_finite() && rate > 0.0);
                }
            }
        }
    }
}

#[test]
fn a_reconnect_resumes_from_the_newest_seq_seen() {
    let mut s = joined();
    s.on_message(
        600.0,
        &Stamped::new(
            995_590.0,
            ServerMessage::State {
                playback: playback(5, false, 1_000.0, 995_700.0),
                cause: None,
            },
        ),
    )
    .unwrap();
    let hello = s.hello(700.0, "token", "Ada");
    assert_eq!(hello.sent_ms, 700.0);
    let ClientMessage::Hello {
        versions, resume, ..
    } = hello.msg
    else {
        panic!("not a hello")
    };
    assert_eq!(versions, vec![2]);
    let resume = resume.expect("a member resumes");
    assert_eq!((resume.member, resume.last_seq), (MemberId(7), 5));
    // The server resumes: a welcome without the room, then what was
    // missed; the session takes them as any other.
    s.on_message(
        800.0,
        &Stamped::new(
            995_790.0,
            ServerMessage::Welcome {
                v: 2,
                member: MemberId(7),
                room: None,
            },
        ),
    )
    .unwrap();
    s.on_message(
        810.0,
        &Stamped::new(
            995_800.0,
            ServerMessage::State {
                playback: playback(6, true, 1_000.0, 995_900.0),
                cause: None,
            },
        ),
    )
    .unwrap();
    assert_eq!(s.seq(), 6);
    // A welcome of another version is refused.
    let err = s
        .on_message(
            820.0,
            &Stamped::new(
                995_810.0,
                ServerMessage::Welcome {
                    v: 1,
                    member: MemberId(7),
                    room: None,
                },
            ),
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedVersion);
}

#[test]
fn frame_callbacks_are_preferred_over_coarse_reads() {
    // A player whose currentTime is truncated to 250 ms: with a fresh
    // requestVideoFrameCallback sample the session takes the frame's media
    // time, carried to the read, not the truncated read (the first report,
    // sent once a pong is in, shows the sensed position).
    let mut s = Session::new(SessionConfig {
        report_granularity_ms: 250.0,
        ..SessionConfig::default()
    });
    s.on_frame(10_123.0, 1_000.0).unwrap();
    s.on_player(read(1_050.0, 10_000.0, true)).unwrap();
    s.tick(1_050.0).unwrap();
    let pings: Vec<u64> = drain(&mut s)
        .into_iter()
        .filter_map(|o| match o {
            Output::Send(Stamped {
                msg: ClientMessage::Ping { id },
                ..
            }) => Some(id),
            _ => None,
        })
        .collect();
    let pong = ServerMessage::Pong {
        id: pings[0],
        t0_ms: 1_050.0,
        t1_ms: 5_000.0,
    };
    s.on_message(1_070.0, &Stamped::new(5_000.0, pong)).unwrap();
    let report = drain(&mut s)
        .into_iter()
        .find_map(|o| match o {
            Output::Send(Stamped {
                msg: ClientMessage::Report { position_ms, .. },
                ..
            }) => Some(position_ms),
            _ => None,
        })
        .expect("a report after the first pong");
    assert_eq!(report, 10_173.0, "the frame's time carried 50 ms");
}
