//! The room timeline as a server uses it: joins, commands, scheduling,
//! buffering, the queue, and random sequences of all of it.

use proptest::prelude::*;
use videosync_sync::room::{
    AllowAll, BufferingPolicy, CommandRequest, Outgoing, Recipients, Role, RoleTable, Room,
    RoomConfig, RoomError, RoomEvent, MAX_TIME_MS,
};
use videosync_sync::state::{
    Command, ErrorCode, MemberId, Playback, MAX_MEDIA_LEN, MAX_RATE, MIN_RATE,
};

const OWNER: MemberId = MemberId(1);
const BOB: MemberId = MemberId(2);
const CAROL: MemberId = MemberId(3);
const DAVE: MemberId = MemberId(4);

fn req(room: &Room, command: Command) -> CommandRequest {
    CommandRequest {
        command,
        based_on_seq: room.seq(),
    }
}

fn send(room: &mut Room, member: MemberId, command: Command, now_ms: f64) -> Vec<Outgoing> {
    let request = req(room, command);
    room.command(&AllowAll, member, request, now_ms)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn scheduled(out: &[Outgoing]) -> Vec<Playback> {
    out.iter()
        .filter_map(|o| match &o.event {
            RoomEvent::Scheduled(p) => {
                assert_eq!(o.to, Recipients::All, "a state goes to everyone");
                Some(p.clone())
            }
            _ => None,
        })
        .collect()
}

fn only_scheduled(out: &[Outgoing]) -> Playback {
    let states = scheduled(out);
    assert_eq!(states.len(), 1, "{out:#?}");
    states[0].clone()
}

/// The last wait list published in `out`, if any.
fn waiting(out: &[Outgoing]) -> Option<Vec<MemberId>> {
    out.iter().rev().find_map(|o| match &o.event {
        RoomEvent::Waiting { members } => Some(members.iter().map(|w| w.member).collect()),
        _ => None,
    })
}

/// The value of a call that must succeed (helpers are not `#[test]`
/// functions, so clippy's test exemption for `unwrap` does not reach them).
fn ok<T>(result: Result<T, RoomError>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// A room with the owner, Bob and Carol in it and "movie" loaded.
fn room_of_three(config: RoomConfig) -> Room {
    let mut room = ok(Room::new(config));
    ok(room.join(OWNER, Role::owner(), 0.0));
    ok(room.join(BOB, Role::member(), 0.0));
    ok(room.join(CAROL, Role::member(), 0.0));
    send(
        &mut room,
        OWNER,
        Command::Load {
            media: "movie".into(),
        },
        0.0,
    );
    room
}

fn playing_room_of_three(config: RoomConfig) -> Room {
    let mut room = room_of_three(config);
    send(&mut room, OWNER, Command::Play, 1_000.0);
    room
}

#[test]
fn a_joiner_mid_playback_gets_the_current_timeline() {
    let mut room = playing_room_of_three(RoomConfig::default());
    let out = room.join(DAVE, Role::viewer(), 5_000.0).unwrap();

    assert_eq!(out.len(), 2);
    assert_eq!(out[0].to, Recipients::Member(DAVE));
    let RoomEvent::Snapshot(snapshot) = &out[0].event else {
        panic!("{out:#?}")
    };
    assert!(snapshot.playback.playing);
    assert_eq!(snapshot.playback.media.as_deref(), Some("movie"));
    assert_eq!(snapshot.playback.position_at(5_000.0), 3_900.0);
    assert!(snapshot.pending.is_empty());
    assert_eq!(snapshot.seq, room.seq());
    assert_eq!(
        snapshot.members.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![OWNER, BOB, CAROL, DAVE]
    );
    assert_eq!(out[1].to, Recipients::AllExcept(DAVE));
    assert!(matches!(&out[1].event, RoomEvent::MemberJoined(m) if m.id == DAVE));
}

#[test]
fn a_joiner_while_a_change_is_pending_gets_both_states() {
    let mut room = playing_room_of_three(RoomConfig::default());
    let seek = only_scheduled(&send(
        &mut room,
        BOB,
        Command::Seek {
            position_ms: 60_000.0,
        },
        5_000.0,
    ));
    let out = room.join(DAVE, Role::viewer(), 5_050.0).unwrap();
    let RoomEvent::Snapshot(snapshot) = &out[0].event else {
        panic!("{out:#?}")
    };
    assert_eq!(snapshot.playback.position_at(5_050.0), 3_950.0, "in force");
    assert_eq!(snapshot.pending, vec![seek]);
}

#[test]
fn pause_stops_every_member_at_one_position() {
    let mut room = playing_room_of_three(RoomConfig::default());
    let delays = [(OWNER, 20.0), (BOB, 150.0), (CAROL, 80.0)];
    for (member, delay) in delays {
        room.report(member, delay, 1_500.0).unwrap();
    }
    let faster = only_scheduled(&send(
        &mut room,
        OWNER,
        Command::SetRate { rate: 1.5 },
        2_000.0,
    ));

    let out = send(&mut room, CAROL, Command::Pause, 4_000.0);
    let pause = only_scheduled(&out);

    // One message to all: each member stops at this exact position when its
    // clock reads `at_ms`, and it reaches even Bob before that instant.
    assert_eq!(out.len(), 1);
    assert!(!pause.playing);
    assert_eq!(pause.at_ms, 4_000.0 + 150.0 + 100.0);
    for (member, delay) in delays {
        assert!(4_000.0 + delay < pause.at_ms, "{member} hears it in time");
    }
    // Where the group is at that instant, so no one jumps.
    assert_eq!(pause.position_ms, faster.position_at(pause.at_ms));
    assert_eq!(pause.position_ms, 1_150.0 + (4_250.0 - 2_250.0) * 1.5);
    // And it stays there.
    assert_eq!(pause.position_at(100_000.0), pause.position_ms);
}

#[test]
fn the_lead_covers_the_slowest_fresh_member_plus_the_margin() {
    let mut room = room_of_three(RoomConfig::default());
    room.report(OWNER, 30.0, 100.0).unwrap();
    room.report(BOB, 240.0, 100.0).unwrap();
    room.report(CAROL, 90.0, 100.0).unwrap();

    let play = only_scheduled(&send(&mut room, OWNER, Command::Play, 1_000.0));
    assert_eq!(play.at_ms, 1_000.0 + 240.0 + 100.0);

    // Bob's estimate goes stale after 30 s; Carol's is renewed.
    room.report(CAROL, 90.0, 30_000.0).unwrap();
    let pause = only_scheduled(&send(&mut room, OWNER, Command::Pause, 30_101.0));
    assert_eq!(pause.at_ms, 30_101.0 + 90.0 + 100.0);

    // A very slow member is capped at the maximum lead.
    room.report(BOB, 9_000.0, 31_000.0).unwrap();
    let play = only_scheduled(&send(&mut room, OWNER, Command::Play, 31_000.0));
    assert_eq!(play.at_ms, 31_000.0 + 2_000.0);

    // It left: its delay no longer counts.
    room.leave(BOB, 40_000.0).unwrap();
    assert_eq!(room.lead_ms(40_000.0), 190.0);
}

#[test]
fn a_seek_is_scheduled_ahead_by_the_lead_plus_the_median_seek_allowance() {
    let mut room = playing_room_of_three(RoomConfig::default());
    room.report(OWNER, 30.0, 1_100.0).unwrap();
    room.report(BOB, 240.0, 1_100.0).unwrap();
    room.report_seek_latency(OWNER, 400.0, 1_100.0).unwrap();
    room.report_seek_latency(BOB, 100.0, 1_100.0).unwrap();

    // The lead (Bob's 240 + 100) plus the median of 100 and 400 (the upper
    // one of two); Carol reported nothing. A slower seeker starts early,
    // aimed further ahead, rather than delaying everyone.
    assert_eq!(room.seek_lead_ms(2_000.0), 340.0 + 400.0);
    let seek = only_scheduled(&send(
        &mut room,
        OWNER,
        Command::Seek {
            position_ms: 60_000.0,
        },
        2_000.0,
    ));
    assert_eq!(seek.at_ms, 2_000.0 + 340.0 + 400.0);
    assert_eq!(seek.position_ms, 60_000.0);
    // Other changes keep the one-way lead.
    let pause = only_scheduled(&send(&mut room, OWNER, Command::Pause, 3_000.0));
    assert_eq!(pause.at_ms, 3_000.0 + 240.0 + 100.0);

    // A nonsense latency is refused and changes nothing.
    let before = room.clone();
    for bad in [-1.0, f64::NAN, f64::INFINITY, 60_001.0] {
        let e = room.report_seek_latency(BOB, bad, 3_000.0).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidValue, "{bad}");
    }
    let e = room.report_seek_latency(DAVE, 100.0, 3_000.0).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(room, before);

    // Stale after 30 s, like a delay.
    room.report(BOB, 240.0, 40_000.0).unwrap();
    assert_eq!(room.seek_lead_ms(40_000.0), 240.0 + 100.0);
}

#[test]
fn the_second_of_two_concurrent_seeks_is_stale() {
    let mut room = playing_room_of_three(RoomConfig::default());
    let seen = room.seq();
    let seek_to = |position_ms| CommandRequest {
        command: Command::Seek { position_ms },
        based_on_seq: seen,
    };

    room.command(&AllowAll, OWNER, seek_to(10_000.0), 5_000.0)
        .unwrap();
    let before = room.clone();
    let err = room
        .command(&AllowAll, BOB, seek_to(50_000.0), 5_010.0)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Stale);
    assert_eq!(room, before);

    // A load is absolute too.
    let load = CommandRequest {
        command: Command::Load {
            media: "other".into(),
        },
        based_on_seq: seen,
    };
    let err = room.command(&AllowAll, OWNER, load, 5_020.0).unwrap_err();
    assert_eq!(err.code, ErrorCode::Stale);
    assert_eq!(room, before);

    // Relative commands and the queue are not checked.
    for command in [
        Command::SetRate { rate: 2.0 },
        Command::Pause,
        Command::QueueAdd {
            media: "next".into(),
        },
    ] {
        let request = CommandRequest {
            command,
            based_on_seq: seen,
        };
        room.command(&AllowAll, CAROL, request, 5_030.0).unwrap();
    }

    // Having seen the seek, Bob may seek again.
    room.command(
        &AllowAll,
        BOB,
        req(
            &room,
            Command::Seek {
                position_ms: 50_000.0,
            },
        ),
        5_040.0,
    )
    .unwrap();
    assert_eq!(room.latest().position_ms, 50_000.0);

    // A seq the room never had is refused.
    let before = room.clone();
    let future = CommandRequest {
        command: Command::Seek { position_ms: 1.0 },
        based_on_seq: room.seq() + 1,
    };
    let err = room.command(&AllowAll, BOB, future, 5_050.0).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidValue);
    assert_eq!(room, before);
}

#[test]
fn a_forbidden_command_leaves_the_room_unchanged() {
    let table = RoleTable::standard();
    let mut room = playing_room_of_three(RoomConfig::default());
    room.join(DAVE, Role::viewer(), 2_000.0).unwrap();
    let before = room.clone();

    for command in [
        Command::Play,
        Command::Pause,
        Command::Seek { position_ms: 5.0 },
        Command::SetRate { rate: 2.0 },
        Command::Load { media: "x".into() },
        Command::QueueAdd { media: "x".into() },
        // Forbidden comes before the value check.
        Command::Seek {
            position_ms: f64::NAN,
        },
    ] {
        let err = room
            .command(&table, DAVE, req(&room, command.clone()), 3_000.0)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden, "{command:?}");
        assert_eq!(room, before);
    }

    // A member may pause but not load.
    let load = req(&room, Command::Load { media: "x".into() });
    let err = room.command(&table, BOB, load, 3_000.0).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert_eq!(room, before);
    room.command(&table, BOB, req(&room, Command::Pause), 3_000.0)
        .unwrap();
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let mut room = playing_room_of_three(RoomConfig::default());
    room.tick(2_000.0).unwrap();
    let before = room.clone();

    let bad_commands = [
        Command::Seek {
            position_ms: f64::NAN,
        },
        Command::Seek {
            position_ms: f64::INFINITY,
        },
        Command::Seek { position_ms: -1.0 },
        Command::Seek {
            position_ms: MAX_TIME_MS * 2.0,
        },
        Command::SetRate { rate: f64::NAN },
        Command::SetRate {
            rate: MIN_RATE - 0.01,
        },
        Command::SetRate {
            rate: MAX_RATE + 0.01,
        },
        Command::SetRate { rate: 0.0 },
        Command::Load {
            media: String::new(),
        },
        Command::Load {
            media: "x".repeat(MAX_MEDIA_LEN + 1),
        },
        Command::QueueAdd {
            media: "line\nbreak".into(),
        },
    ];
    for command in bad_commands {
        let err = room
            .command(&AllowAll, BOB, req(&room, command.clone()), 3_000.0)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidValue, "{command:?}");
        assert_eq!(room, before);
    }

    let stranger = MemberId(99);
    let errors = [
        room.command(&AllowAll, stranger, req(&room, Command::Pause), 3_000.0)
            .unwrap_err(),
        room.leave(stranger, 3_000.0).unwrap_err(),
        room.report(stranger, 10.0, 3_000.0).unwrap_err(),
        room.buffering(stranger, 3_000.0).unwrap_err(),
        room.ready(stranger, 3_000.0).unwrap_err(),
        room.set_role(stranger, Role::owner(), 3_000.0).unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.code, ErrorCode::NotFound, "{err}");
    }
    assert_eq!(room, before);

    let invalid = [
        room.join(BOB, Role::owner(), 3_000.0).unwrap_err(),
        room.tick(1_999.0).unwrap_err(),
        room.tick(f64::NAN).unwrap_err(),
        room.tick(-1.0).unwrap_err(),
        room.buffering(BOB, 1_000.0).unwrap_err(),
        room.report(BOB, -1.0, 3_000.0).unwrap_err(),
        room.report(BOB, f64::INFINITY, 3_000.0).unwrap_err(),
        room.set_policy(BufferingPolicy::WaitForAll { timeout_ms: -5.0 }, 3_000.0)
            .unwrap_err(),
        room.command(&AllowAll, BOB, req(&room, Command::Pause), f64::INFINITY)
            .unwrap_err(),
    ];
    for err in invalid {
        assert_eq!(err.code, ErrorCode::InvalidValue, "{err}");
    }
    assert_eq!(room, before);

    // Nothing to play yet.
    let mut empty = Room::default();
    empty.join(OWNER, Role::owner(), 0.0).unwrap();
    let before = empty.clone();
    for command in [Command::Play, Command::Seek { position_ms: 1.0 }] {
        let err = empty
            .command(&AllowAll, OWNER, req(&empty, command), 1.0)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidValue);
    }
    assert_eq!(empty, before);
}

#[test]
fn seek_keeps_playing_or_paused_and_load_resets() {
    let mut room = playing_room_of_three(RoomConfig::default());
    let seek = only_scheduled(&send(
        &mut room,
        BOB,
        Command::Seek {
            position_ms: 30_000.0,
        },
        2_000.0,
    ));
    assert!(seek.playing);
    assert_eq!(seek.position_ms, 30_000.0);
    assert_eq!(seek.position_at(seek.at_ms + 1_000.0), 31_000.0);

    send(&mut room, BOB, Command::Pause, 3_000.0);
    send(&mut room, OWNER, Command::SetRate { rate: 2.0 }, 3_500.0);
    let seek = only_scheduled(&send(
        &mut room,
        BOB,
        Command::Seek {
            position_ms: 5_000.0,
        },
        4_000.0,
    ));
    assert!(!seek.playing);
    assert_eq!(seek.position_at(seek.at_ms + 1_000.0), 5_000.0);

    send(&mut room, OWNER, Command::Play, 5_000.0);
    let load = only_scheduled(&send(
        &mut room,
        OWNER,
        Command::Load {
            media: "sequel".into(),
        },
        6_000.0,
    ));
    assert_eq!(load.media.as_deref(), Some("sequel"));
    assert!(!load.playing);
    assert_eq!(load.position_ms, 0.0);
    assert_eq!(load.rate, 2.0, "the rate is the room's, kept across loads");
}

#[test]
fn a_command_that_changes_nothing_emits_nothing() {
    let mut room = playing_room_of_three(RoomConfig::default());
    let seq = room.seq();
    assert!(send(&mut room, BOB, Command::Play, 2_000.0).is_empty());
    assert!(send(&mut room, BOB, Command::SetRate { rate: 1.0 }, 2_000.0).is_empty());
    send(&mut room, BOB, Command::Pause, 2_000.0);
    assert!(send(&mut room, BOB, Command::Pause, 2_000.0).is_empty());
    assert_eq!(room.seq(), seq + 1);
}

#[test]
fn scheduled_states_keep_their_order_and_are_rate_limited() {
    let config = RoomConfig {
        max_pending: 2,
        ..RoomConfig::default()
    };
    let mut room = playing_room_of_three(config);
    let first = only_scheduled(&send(&mut room, BOB, Command::Pause, 2_000.0));
    room.report(BOB, 500.0, 2_010.0).unwrap();
    let second = only_scheduled(&send(&mut room, BOB, Command::Play, 2_010.0));
    assert_eq!((first.at_ms, second.at_ms), (2_100.0, 2_610.0));

    let before = room.clone();
    let err = room
        .command(&AllowAll, BOB, req(&room, Command::Pause), 2_020.0)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RateLimited);
    assert_eq!(room, before);
    // Once they are in force there is room again.
    send(&mut room, BOB, Command::Pause, 2_610.0);
}

#[test]
fn wait_for_all_pauses_for_buffering_members_and_resumes_when_all_are_ready() {
    let mut room = playing_room_of_three(RoomConfig::default());
    let playing = room.latest().clone();

    let out = room.buffering(BOB, 5_000.0).unwrap();
    assert!(
        matches!(&out[0].event, RoomEvent::MemberUpdated(m) if m.id == BOB && m.buffering_since_ms == Some(5_000.0))
    );
    let pause = only_scheduled(&out);
    assert!(!pause.playing);
    assert_eq!(pause.at_ms, 5_100.0);
    assert_eq!(pause.position_ms, playing.position_at(5_100.0));
    assert_eq!(waiting(&out), Some(vec![BOB]));

    let out = room.buffering(CAROL, 5_050.0).unwrap();
    assert!(scheduled(&out).is_empty(), "already paused");
    assert_eq!(waiting(&out), Some(vec![BOB, CAROL]));
    assert_eq!(room.waiting(), vec![BOB, CAROL]);

    // A second report changes nothing.
    assert!(room.buffering(CAROL, 5_060.0).unwrap().is_empty());

    let out = room.ready(BOB, 6_000.0).unwrap();
    assert_eq!(waiting(&out), Some(vec![CAROL]));
    assert!(scheduled(&out).is_empty());

    let out = room.ready(CAROL, 7_000.0).unwrap();
    assert_eq!(waiting(&out), Some(vec![]));
    let resume = only_scheduled(&out);
    assert!(resume.playing);
    assert_eq!(resume.at_ms, 7_100.0);
    assert_eq!(
        resume.position_ms, pause.position_ms,
        "from where it paused"
    );
    assert!(room.ready(CAROL, 7_200.0).unwrap().is_empty());
}

#[test]
fn a_member_buffering_past_the_timeout_is_dropped_from_the_wait() {
    let config = RoomConfig {
        buffering: BufferingPolicy::WaitForAll {
            timeout_ms: 4_000.0,
        },
        ..RoomConfig::default()
    };
    let mut room = playing_room_of_three(config);
    room.buffering(BOB, 5_000.0).unwrap();
    room.buffering(CAROL, 6_000.0).unwrap();
    assert_eq!(room.next_deadline(), Some(9_000.0));

    assert!(room.tick(8_999.0).unwrap().is_empty());
    let out = room.tick(9_000.0).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(waiting(&out), Some(vec![CAROL]));
    assert_eq!(room.next_deadline(), Some(10_000.0));

    let out = room.tick(12_000.0).unwrap();
    assert_eq!(waiting(&out), Some(vec![]));
    let resume = only_scheduled(&out);
    assert!(resume.playing);
    assert_eq!(resume.at_ms, 12_100.0);
    assert_eq!(room.next_deadline(), None);

    // They still buffer, and catch up on their own: the group goes on.
    assert!(room.member(BOB).unwrap().is_buffering());
    assert!(room.latest().playing);
    assert!(room.waiting().is_empty());
    let out = room.ready(BOB, 13_000.0).unwrap();
    assert!(scheduled(&out).is_empty());
    assert_eq!(waiting(&out), None);
}

#[test]
fn leaving_during_a_wait_releases_the_group() {
    let mut room = playing_room_of_three(RoomConfig::default());
    room.buffering(BOB, 5_000.0).unwrap();
    room.buffering(CAROL, 5_000.0).unwrap();

    let out = room.leave(BOB, 6_000.0).unwrap();
    assert_eq!(out[0].to, Recipients::All);
    assert_eq!(out[0].event, RoomEvent::MemberLeft(BOB));
    assert_eq!(waiting(&out), Some(vec![CAROL]));
    assert!(scheduled(&out).is_empty());

    let out = room.leave(CAROL, 7_000.0).unwrap();
    assert_eq!(waiting(&out), Some(vec![]));
    assert!(only_scheduled(&out).playing);
    assert!(room.member(CAROL).is_none());
}

#[test]
fn a_joiner_during_a_wait_is_waited_for_only_once_it_buffers() {
    let mut room = playing_room_of_three(RoomConfig {
        min_wait_gap_ms: 0.0,
        ..RoomConfig::default()
    });
    room.buffering(BOB, 5_000.0).unwrap();

    let out = room.join(DAVE, Role::member(), 5_500.0).unwrap();
    let RoomEvent::Snapshot(snapshot) = &out[0].event else {
        panic!("{out:#?}")
    };
    assert_eq!(
        snapshot
            .waiting
            .iter()
            .map(|w| w.member)
            .collect::<Vec<_>>(),
        vec![BOB]
    );
    assert!(!snapshot.playback.playing || !snapshot.pending.is_empty());
    assert_eq!(room.waiting(), vec![BOB]);

    let out = room.buffering(DAVE, 5_600.0).unwrap();
    assert_eq!(waiting(&out), Some(vec![BOB, DAVE]));
    room.ready(BOB, 6_000.0).unwrap();
    let out = room.ready(DAVE, 6_500.0).unwrap();
    assert!(only_scheduled(&out).playing);

    // A joiner that never reports buffering holds nothing.
    room.join(MemberId(5), Role::member(), 7_000.0).unwrap();
    let out = room.buffering(CAROL, 8_000.0).unwrap();
    assert_eq!(waiting(&out), Some(vec![CAROL]));
    assert!(only_scheduled(&room.ready(CAROL, 8_500.0).unwrap()).playing);
}

#[test]
fn play_waits_for_members_still_loading() {
    let mut room = room_of_three(RoomConfig::default());
    room.buffering(BOB, 100.0).unwrap();
    room.buffering(CAROL, 100.0).unwrap();
    assert!(room.waiting().is_empty(), "paused: no one is waited for");

    let out = send(&mut room, OWNER, Command::Play, 1_000.0);
    assert!(scheduled(&out).is_empty());
    assert_eq!(waiting(&out), Some(vec![BOB, CAROL]));
    assert!(room.wants_to_play());

    room.ready(BOB, 1_500.0).unwrap();
    let play = only_scheduled(&room.ready(CAROL, 2_000.0).unwrap());
    assert!(play.playing);
    assert_eq!(play.position_ms, 0.0);
}

#[test]
fn pause_during_a_wait_calls_it_off() {
    let mut room = playing_room_of_three(RoomConfig::default());
    room.buffering(BOB, 5_000.0).unwrap();
    let out = send(&mut room, CAROL, Command::Pause, 5_500.0);
    assert!(scheduled(&out).is_empty(), "already paused for the wait");
    assert_eq!(waiting(&out), Some(vec![]));
    let out = room.ready(BOB, 6_000.0).unwrap();
    assert!(scheduled(&out).is_empty(), "no resume after a pause");
    assert!(!room.latest().playing);
}

#[test]
fn the_ignore_policy_never_holds_the_group() {
    let config = RoomConfig {
        buffering: BufferingPolicy::Ignore,
        ..RoomConfig::default()
    };
    let mut room = playing_room_of_three(config);
    let out = room.buffering(BOB, 5_000.0).unwrap();
    assert_eq!(out.len(), 1, "only the member's flag: {out:#?}");
    assert!(room.latest().playing);
    assert!(room.waiting().is_empty());
}

#[test]
fn switching_to_ignore_releases_a_waiting_group() {
    let mut room = playing_room_of_three(RoomConfig::default());
    room.buffering(BOB, 5_000.0).unwrap();
    let out = room.set_policy(BufferingPolicy::Ignore, 6_000.0).unwrap();
    assert_eq!(waiting(&out), Some(vec![]));
    assert!(only_scheduled(&out).playing);
    assert_eq!(room.policy(), BufferingPolicy::Ignore);
}

#[test]
fn queue_add_remove_and_reorder() {
    let mut room = room_of_three(RoomConfig {
        max_queue_len: 4,
        ..RoomConfig::default()
    });
    let playback = room.latest().clone();
    let ids = |room: &Room| room.queue().iter().map(|i| i.id).collect::<Vec<_>>();

    for media in ["a", "b", "c"] {
        let seq = room.seq();
        let out = send(
            &mut room,
            BOB,
            Command::QueueAdd {
                media: media.into(),
            },
            10.0,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, Recipients::All);
        let RoomEvent::QueueChanged {
            seq: new_seq,
            items,
        } = &out[0].event
        else {
            panic!("{out:#?}")
        };
        assert_eq!(*new_seq, seq + 1);
        assert_eq!(items.as_slice(), room.queue());
    }
    assert_eq!(ids(&room), vec![1, 2, 3]);

    send(
        &mut room,
        OWNER,
        Command::QueueReorder { item: 3, to: 0 },
        20.0,
    );
    assert_eq!(ids(&room), vec![3, 1, 2]);
    send(
        &mut room,
        OWNER,
        Command::QueueReorder { item: 3, to: 99 },
        20.0,
    );
    assert_eq!(ids(&room), vec![1, 2, 3]);
    let out = send(
        &mut room,
        OWNER,
        Command::QueueReorder { item: 2, to: 1 },
        20.0,
    );
    assert!(out.is_empty(), "already there");

    send(&mut room, OWNER, Command::QueueRemove { item: 1 }, 30.0);
    assert_eq!(ids(&room), vec![2, 3]);
    let before = room.clone();
    for command in [
        Command::QueueRemove { item: 1 },
        Command::QueueReorder { item: 1, to: 0 },
    ] {
        let err = room
            .command(&AllowAll, OWNER, req(&room, command), 40.0)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert_eq!(room, before);
    }

    // Ids are never reused.
    send(
        &mut room,
        OWNER,
        Command::QueueAdd { media: "d".into() },
        50.0,
    );
    send(
        &mut room,
        OWNER,
        Command::QueueAdd { media: "e".into() },
        50.0,
    );
    assert_eq!(ids(&room), vec![2, 3, 4, 5]);
    let before = room.clone();
    let full = req(&room, Command::QueueAdd { media: "f".into() });
    let err = room.command(&AllowAll, OWNER, full, 60.0).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidValue);
    assert_eq!(room, before);

    // The queue never touched playback.
    assert_eq!(room.latest(), &playback);
}

// ---- property tests -------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Join(u64, usize),
    Leave(u64),
    Report(u64, f64),
    Command(u64, Command, Based),
    Buffering(u64),
    Ready(u64),
    Tick,
    SetPolicy(BufferingPolicy),
}

/// What a command claims to be based on, relative to the room.
#[derive(Debug, Clone, Copy)]
enum Based {
    Latest,
    Behind(u64),
    Ahead,
    Any(u64),
}

const ROLES: [&str; 5] = ["owner", "moderator", "member", "viewer", "stranger"];

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0..200_000.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-1.0),
        1 => Just(-0.0),
        1 => Just(1e300),
        1 => Just(MAX_TIME_MS),
        1 => any::<f64>(),
    ]
}

fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => MIN_RATE..=MAX_RATE,
        1 => Just(1.0),
        1 => number(),
    ]
}

fn media() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9]{1,8}",
        1 => Just(String::new()),
        1 => Just("x".repeat(MAX_MEDIA_LEN + 1)),
        1 => Just("bad\u{0}id".to_string()),
        1 => any::<String>(),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Play),
        Just(Command::Pause),
        number().prop_map(|position_ms| Command::Seek { position_ms }),
        rate().prop_map(|rate| Command::SetRate { rate }),
        media().prop_map(|media| Command::Load { media }),
        media().prop_map(|media| Command::QueueAdd { media }),
        (0u64..8).prop_map(|item| Command::QueueRemove { item }),
        (0u64..8, 0usize..10).prop_map(|(item, to)| Command::QueueReorder { item, to }),
    ]
}

fn based() -> impl Strategy<Value = Based> {
    prop_oneof![
        6 => Just(Based::Latest),
        2 => (1u64..4).prop_map(Based::Behind),
        1 => Just(Based::Ahead),
        1 => any::<u64>().prop_map(Based::Any),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let member = 0u64..6;
    prop_oneof![
        3 => (member.clone(), 0..ROLES.len()).prop_map(|(m, r)| Op::Join(m, r)),
        1 => member.clone().prop_map(Op::Leave),
        2 => (member.clone(), prop_oneof![4 => 0.0..3_000.0f64, 1 => number()])
            .prop_map(|(m, d)| Op::Report(m, d)),
        8 => (member.clone(), command(), based()).prop_map(|(m, c, b)| Op::Command(m, c, b)),
        3 => member.clone().prop_map(Op::Buffering),
        3 => member.prop_map(Op::Ready),
        2 => Just(Op::Tick),
        1 => prop_oneof![
            Just(BufferingPolicy::Ignore),
            (0.0..5_000.0f64).prop_map(|timeout_ms| BufferingPolicy::WaitForAll { timeout_ms }),
            number().prop_map(|timeout_ms| BufferingPolicy::WaitForAll { timeout_ms }),
        ]
        .prop_map(Op::SetPolicy),
    ]
}

/// How far time moves before an op: mostly forward, sometimes not at all,
/// now and then backwards or to garbage (which must be refused).
fn step() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0..3_000.0f64,
        3 => Just(0.0),
        1 => Just(-5.0),
        1 => Just(f64::NAN),
    ]
}

fn initial_policy() -> impl Strategy<Value = BufferingPolicy> {
    prop_oneof![
        Just(BufferingPolicy::Ignore),
        (0.0..6_000.0f64).prop_map(|timeout_ms| BufferingPolicy::WaitForAll { timeout_ms }),
    ]
}

fn apply(room: &mut Room, op: &Op, now: f64) -> Result<Vec<Outgoing>, RoomError> {
    let table = RoleTable::standard();
    match op.clone() {
        Op::Join(m, r) => room.join(MemberId(m), Role::new(ROLES[r]), now),
        Op::Leave(m) => room.leave(MemberId(m), now),
        Op::Report(m, d) => room.report(MemberId(m), d, now).map(|()| Vec::new()),
        Op::Command(m, command, based) => {
            let seq = room.seq();
            let based_on_seq = match based {
                Based::Latest => seq,
                Based::Behind(n) => seq.saturating_sub(n),
                Based::Ahead => seq + 1,
                Based::Any(n) => n,
            };
            let request = CommandRequest {
                command,
                based_on_seq,
            };
            room.command(&table, MemberId(m), request, now)
        }
        Op::Buffering(m) => room.buffering(MemberId(m), now),
        Op::Ready(m) => room.ready(MemberId(m), now),
        Op::Tick => room.tick(now),
        Op::SetPolicy(policy) => room.set_policy(policy, now),
    }
}

fn check_playback(p: &Playback, now: f64) {
    assert!(p.position_ms.is_finite() && p.position_ms >= 0.0, "{p:?}");
    let at_now = p.position_at(now);
    assert!(at_now.is_finite() && at_now >= 0.0, "{p:?} at {now}");
    assert!((MIN_RATE..=MAX_RATE).contains(&p.rate), "{p:?}");
    assert!(p.at_ms.is_finite(), "{p:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_sessions_keep_every_invariant(
        policy in initial_policy(),
        ops in prop::collection::vec((step(), op()), 1..80),
    ) {
        let config = RoomConfig {
            buffering: policy,
            max_queue_len: 5,
            max_pending: 3,
            ..RoomConfig::default()
        };
        let mut room = Room::new(config).unwrap();
        let mut now = 0.0f64;
        let mut last_scheduled_seq = 0u64;

        for (dt, op) in &ops {
            let at = now + dt;
            let before = room.clone();
            let before_debug = format!("{room:?}");
            let result = apply(&mut room, op, at);

            if at.is_nan() || at < now {
                prop_assert!(result.is_err(), "time going back must be refused: {op:?}");
            }
            match result {
                Err(err) => {
                    // Refused: not a bit changed.
                    prop_assert_eq!(&room, &before);
                    prop_assert_eq!(format!("{room:?}"), before_debug);
                    prop_assert!(!err.message.is_empty());
                }
                Ok(out) => {
                    now = at;
                    prop_assert!(room.seq() >= before.seq());
                    for o in &out {
                        match o.to {
                            Recipients::Member(id) | Recipients::AllExcept(id) => {
                                prop_assert!(room.member(id).is_some(), "{o:?}");
                            }
                            Recipients::All => {}
                        }
                        match &o.event {
                            RoomEvent::Scheduled(p) => {
                                prop_assert!(p.at_ms >= now, "{p:?} scheduled before {now}");
                                prop_assert!(p.seq > last_scheduled_seq, "{p:?}");
                                prop_assert!(p.seq <= room.seq());
                                last_scheduled_seq = p.seq;
                                check_playback(p, now);
                            }
                            RoomEvent::Snapshot(s) => {
                                prop_assert_eq!(s.seq, room.seq());
                                check_playback(&s.playback, now);
                                prop_assert!(s.playback.at_ms <= now);
                                for p in &s.pending {
                                    prop_assert!(p.at_ms > now);
                                    check_playback(p, now);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }

            // Invariants of the room, refused or not.
            check_playback(room.playback_at(now), now);
            check_playback(room.latest(), now);
            prop_assert!(room.latest().seq <= room.seq());
            let waiting = room.waiting();
            if !waiting.is_empty() {
                prop_assert!(!room.latest().playing, "waiting while playing");
                prop_assert!(
                    matches!(room.policy(), BufferingPolicy::WaitForAll { .. }),
                    "waiting under Ignore"
                );
            }
            for id in waiting {
                let member = room.member(id);
                prop_assert!(member.is_some_and(|m| m.is_buffering()), "{id} waited for but not buffering");
            }
            if room.latest().playing || !room.waiting().is_empty() {
                prop_assert!(room.latest().media.is_some(), "playing nothing");
            }
            prop_assert!(room.pending(now).iter().all(|p| p.at_ms <= now + room.config().max_lead_ms));
        }
    }

    #[test]
    fn a_pause_lands_where_the_timeline_is(
        delays in prop::collection::vec(0.0..1_500.0f64, 1..6),
        rate in MIN_RATE..=MAX_RATE,
        play_at in 0.0..10_000.0f64,
        played in 0.0..100_000.0f64,
    ) {
        let mut room = Room::default();
        for (i, delay) in delays.iter().enumerate() {
            let id = MemberId(i as u64);
            room.join(id, Role::owner(), 0.0).unwrap();
            room.report(id, *delay, 0.0).unwrap();
        }
        let owner = MemberId(0);
        send(&mut room, owner, Command::Load { media: "m".into() }, 0.0);
        send(&mut room, owner, Command::SetRate { rate }, 0.0);
        let play = only_scheduled(&send(&mut room, owner, Command::Play, play_at));
        let now = play.at_ms + played;
        for (i, delay) in delays.iter().enumerate() {
            room.report(MemberId(i as u64), *delay, now).unwrap();
        }
        let pause = only_scheduled(&send(&mut room, owner, Command::Pause, now));

        let slowest = delays.iter().copied().fold(0.0, f64::max);
        let lead = (slowest + 100.0).clamp(100.0, 2_000.0);
        prop_assert_eq!(pause.at_ms, now + lead);
        for delay in &delays {
            prop_assert!(now + delay <= pause.at_ms);
        }
        prop_assert_eq!(pause.position_ms, play.position_at(pause.at_ms));
        prop_assert_eq!(pause.position_at(pause.at_ms + 5_000.0), pause.position_ms);
    }
}

#[test]
fn a_restored_room_carries_on_the_timeline_and_the_queue() {
    let mut room = playing_room_of_three(RoomConfig::default());
    send(
        &mut room,
        OWNER,
        Command::QueueAdd {
            media: "next".into(),
        },
        3_000.0,
    );
    send(
        &mut room,
        OWNER,
        Command::Seek {
            position_ms: 40_000.0,
        },
        3_100.0,
    );
    let durable = room.durable();
    // It crosses processes as JSON.
    let text = serde_json::to_string(&durable).unwrap();
    let back: videosync_sync::room::Durable = serde_json::from_str(&text).unwrap();
    assert_eq!(back, durable);
    let mut restored = ok(Room::restore(back));
    assert_eq!(restored.seq(), room.seq());
    assert_eq!(restored.latest(), room.latest());
    assert_eq!(restored.queue(), room.queue());
    assert!(restored.members().is_empty());
    assert_eq!(restored.playback_at(10_000.0), room.playback_at(10_000.0));

    // A member that had seen everything resumes without a snapshot; one
    // that had not gets the whole room (the history stayed behind).
    let out = ok(restored.resume(OWNER, Role::owner(), room.seq(), 10_000.0));
    assert!(!out
        .iter()
        .any(|o| matches!(o.event, RoomEvent::Snapshot(_))));
    let out = ok(restored.resume(BOB, Role::member(), room.seq() - 1, 10_000.0));
    assert!(out
        .iter()
        .any(|o| o.to == Recipients::Member(BOB) && matches!(o.event, RoomEvent::Snapshot(_))));

    // Commands go on numbering from where the old room stopped, and the
    // next queue item gets a fresh id.
    let seq = restored.seq();
    send(
        &mut restored,
        OWNER,
        Command::QueueAdd {
            media: "later".into(),
        },
        10_100.0,
    );
    assert_eq!(restored.seq(), seq + 1);
    let ids: Vec<u64> = restored.queue().iter().map(|q| q.id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[1] > ids[0]);
    // A time before the old room's latest call is refused.
    assert!(restored.report(OWNER, 10.0, 1_000.0).is_err());
}

#[test]
fn restore_refuses_what_no_room_could_have_saved() {
    let mut room = playing_room_of_three(RoomConfig::default());
    send(
        &mut room,
        OWNER,
        Command::QueueAdd {
            media: "next".into(),
        },
        3_000.0,
    );
    let good = room.durable();
    let mut cases = Vec::new();
    let mut d = good.clone();
    d.seq = 0;
    cases.push(("a state above seq", d));
    let mut d = good.clone();
    d.next_item_id = 0;
    cases.push(("a queue id not below next_item_id", d));
    let mut d = good.clone();
    d.current.rate = f64::NAN;
    cases.push(("a NaN rate", d));
    let mut d = good.clone();
    d.position_seq = d.seq + 1;
    cases.push(("position_seq above seq", d));
    let mut d = good.clone();
    d.last_now_ms = Some(-1.0);
    cases.push(("a negative time", d));
    let mut d = good.clone();
    d.config.max_pending = 0;
    cases.push(("a bad config", d));
    for (what, d) in cases {
        let err = Room::restore(d).expect_err(what);
        assert_eq!(err.code, ErrorCode::InvalidValue, "{what}");
    }
    assert!(Room::restore(good).is_ok());
}

#[test]
fn at_the_end_of_the_media_the_queue_plays_next() {
    let mut room = playing_room_of_three(RoomConfig::default());
    send(
        &mut room,
        OWNER,
        Command::QueueAdd {
            media: "sequel".into(),
        },
        2_100.0,
    );
    send(
        &mut room,
        OWNER,
        Command::QueueAdd {
            media: "third".into(),
        },
        2_200.0,
    );
    // Not the media playing (someone loaded another meanwhile): nothing.
    assert!(ok(room.play_next("other", 9_000.0, 9_000.0)).is_empty());
    let out = ok(room.play_next("movie", 9_000.0, 9_000.0));
    let state = only_scheduled(&out);
    assert_eq!(state.media.as_deref(), Some("sequel"));
    assert!(state.playing);
    assert_eq!(state.position_ms, 0.0);
    assert!(state.at_ms >= 9_000.0);
    assert!(out.iter().any(|o| matches!(&o.event, RoomEvent::QueueChanged { items, .. } if items.len() == 1 && items[0].media == "third")));
    assert_eq!(room.queue().len(), 1);
    // Called twice for the same end (a late timer): the second does nothing.
    assert!(ok(room.play_next("movie", 9_000.0, 9_100.0)).is_empty());
    // A paused room does not move on.
    send(&mut room, OWNER, Command::Pause, 9_500.0);
    assert!(ok(room.play_next("sequel", 500.0, 20_000.0)).is_empty());
    let bad = room.play_next("sequel", f64::NAN, 20_000.0);
    assert_eq!(
        bad.map(|_| ()).map_err(|e| e.code),
        Err(ErrorCode::InvalidValue)
    );
}

#[test]
fn at_the_end_of_the_media_an_empty_queue_stops_the_room_on_the_last_frame() {
    let mut room = playing_room_of_three(RoomConfig::default());
    // The timer fires a little late: the room stops at the end, not past it.
    let out = ok(room.play_next("movie", 7_000.0, 9_040.0));
    let state = only_scheduled(&out);
    assert_eq!(state.media.as_deref(), Some("movie"));
    assert!(!state.playing);
    assert_eq!(state.position_ms, 7_000.0);
    assert!(state.at_ms >= 9_040.0);
    // Done once: the room is paused now.
    assert!(ok(room.play_next("movie", 7_000.0, 9_500.0)).is_empty());
    // Anyone may play again from the end, or seek back.
    send(
        &mut room,
        OWNER,
        Command::Seek {
            position_ms: 1_000.0,
        },
        10_000.0,
    );
    assert_eq!(room.latest().position_ms, 1_000.0);
}
