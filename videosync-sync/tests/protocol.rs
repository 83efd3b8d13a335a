//! The wire protocol as a client or server sees it: the guide's examples,
//! exact encodings, version negotiation, refusals of bad input, and
//! properties over arbitrary input.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::Value;
use videosync_sync::protocol::{
    decode_client, decode_server, encode, negotiate, queue_pages, snapshot_messages, Behind, Cause,
    ClientMessage, MemberInfo, PresenceEvent, ProtocolError, Resume, RoomPolicy, RoomSnapshot,
    ServerMessage, Stamped, MAX_ERROR_MESSAGE_CHARS, MAX_MEMBERS, MAX_MESSAGE_BYTES,
    MAX_SERVER_MESSAGE_BYTES, MEMBER_PAGE_ITEMS, PROTOCOL_VERSION, QUEUE_PAGE_ITEMS,
};
use videosync_sync::room::{Role, Room};
use videosync_sync::state::{Command, ErrorCode, MemberId, Playback, QueueItem, Waited};

// ---------------------------------------------------------------------------
// (1) docs/protocol.md: every JSON example decodes and re-encodes to itself.

fn json_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        match current.take() {
            None => {
                if trimmed == "```json" {
                    current = Some((index + 1, String::new()));
                }
            }
            Some((start, mut text)) => {
                if trimmed == "```" {
                    blocks.push((start, text));
                } else {
                    text.push_str(line);
                    text.push('\n');
                    current = Some((start, text));
                }
            }
        }
    }
    assert!(
        current.is_none(),
        "unclosed ```json block in docs/protocol.md"
    );
    blocks
}

fn same_json(original: &str, encoded: &str) -> bool {
    let a = serde_json::from_str::<Value>(original).ok();
    let b = serde_json::from_str::<Value>(encoded).ok();
    a.is_some() && a == b
}

fn guide() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading docs/protocol.md: {e}"))
}

#[test]
fn every_example_in_the_protocol_guide_decodes_and_reencodes_to_itself() {
    let blocks = json_blocks(&guide());
    assert!(
        blocks.len() >= 30,
        "only {} json blocks found",
        blocks.len()
    );

    let mut client_types = BTreeSet::new();
    let mut server_types = BTreeSet::new();
    let mut commands = BTreeSet::new();
    for (line, block) in &blocks {
        // A block is an example of whichever direction reads it back
        // exactly; `chat`, `typing` and `reaction` exist in both, with
        // different fields.
        let as_client = decode_client(block);
        let as_server = decode_server(block);
        match (&as_client, &as_server) {
            (Ok(frame), _) if same_json(block, &encode(frame)) => {
                client_types.insert(frame.msg.kind());
                if let ClientMessage::Command { .. } = frame.msg {
                    let encoded: Value = serde_json::from_str(&encode(frame)).unwrap();
                    commands.insert(encoded["command"].as_str().unwrap().to_owned());
                }
            }
            (_, Ok(frame)) if same_json(block, &encode(frame)) => {
                server_types.insert(frame.msg.kind());
            }
            _ => panic!(
                "docs/protocol.md line {line}: example does not round-trip\n{block}\n\
                 as client: {as_client:?}\nas server: {as_server:?}"
            ),
        }
    }

    let all_client: BTreeSet<_> = ClientMessage::TYPES.iter().copied().collect();
    let all_server: BTreeSet<_> = ServerMessage::TYPES.iter().copied().collect();
    assert_eq!(client_types, all_client, "client types without an example");
    assert_eq!(server_types, all_server, "server types without an example");
    let all_commands: BTreeSet<String> = [
        "play",
        "pause",
        "seek",
        "set_rate",
        "load",
        "queue_add",
        "queue_remove",
        "queue_reorder",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(commands, all_commands, "commands without an example");
}

#[test]
fn the_guides_error_examples_are_what_the_decoder_says() {
    let guide = guide();
    let err = decode_client(
        r#"{"type":"command","id":10,"based_on_seq":44,"command":"set_rate","rate":10,"sent_ms":1}"#,
    )
    .unwrap_err();
    let reply = encode(&Stamped::new(1_718_000_037_000.0, ServerMessage::from(err)));
    assert!(
        guide.contains(&reply),
        "docs/protocol.md should show {reply}"
    );
    let err = decode_client(r#"{"type":"hello","v":1,"token":"t","name":"Ada","sent_ms":1}"#)
        .unwrap_err();
    let reply = encode(&Stamped::new(1_718_000_038_000.0, ServerMessage::from(err)));
    assert!(
        guide.contains(&reply),
        "docs/protocol.md should show {reply}"
    );
}

// ---------------------------------------------------------------------------
// (2) The exact frames, versions, pages.

fn playback() -> Playback {
    Playback {
        media: Some("vid_7f3a9c".into()),
        playing: true,
        position_ms: 90_000.0,
        at_ms: 1_718_000_000_250.0,
        rate: 1.0,
        seq: 42,
    }
}

#[test]
fn frames_are_encoded_exactly() {
    let cases: Vec<(String, &str)> = vec![
        (
            encode(&Stamped::new(48_210.5, ClientMessage::Ping { id: 12 })),
            r#"{"type":"ping","id":12,"sent_ms":48210.5}"#,
        ),
        (
            encode(&Stamped::new(
                1.0,
                ClientMessage::Hello {
                    versions: vec![PROTOCOL_VERSION],
                    token: "tok".into(),
                    name: "Ada".into(),
                    resume: Some(Resume {
                        member: MemberId(17),
                        last_seq: 41,
                    }),
                },
            )),
            r#"{"type":"hello","versions":[2],"token":"tok","name":"Ada","resume":{"member":17,"last_seq":41},"sent_ms":1.0}"#,
        ),
        (
            encode(&Stamped::new(
                2.0,
                ClientMessage::Command {
                    id: 9,
                    based_on_seq: 43,
                    command: Command::Seek {
                        position_ms: 90_000.0,
                    },
                },
            )),
            r#"{"type":"command","id":9,"based_on_seq":43,"command":"seek","position_ms":90000.0,"sent_ms":2.0}"#,
        ),
        (
            encode(&Stamped::new(
                1_718_000_000_010.0,
                ServerMessage::State {
                    playback: playback(),
                    cause: Some(Cause {
                        by: MemberId(17),
                        request_id: 9,
                    }),
                },
            )),
            r#"{"type":"state","playback":{"media":"vid_7f3a9c","playing":true,"position_ms":90000.0,"at_ms":1718000000250.0,"rate":1.0,"seq":42},"cause":{"by":17,"request_id":9},"sent_ms":1718000000010.0}"#,
        ),
        (
            encode(&Stamped::new(
                1_718_000_000_012.5,
                ServerMessage::Pong {
                    id: 12,
                    t0_ms: 48_210.5,
                    t1_ms: 1_718_000_000_012.25,
                },
            )),
            r#"{"type":"pong","id":12,"t0_ms":48210.5,"t1_ms":1718000000012.25,"sent_ms":1718000000012.5}"#,
        ),
        (
            encode(&Stamped::new(
                5.0,
                ServerMessage::Waiting {
                    members: vec![Waited {
                        member: MemberId(3),
                        deadline_ms: 9.5,
                    }],
                },
            )),
            r#"{"type":"waiting","members":[{"member":3,"deadline_ms":9.5}],"sent_ms":5.0}"#,
        ),
        (
            encode(&Stamped::new(
                7.0,
                ServerMessage::from(
                    ProtocolError::new(ErrorCode::Forbidden, "viewers may not seek")
                        .with_request_id(9),
                ),
            )),
            r#"{"type":"error","code":"forbidden","message":"viewers may not seek","request_id":9,"sent_ms":7.0}"#,
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

#[test]
fn versions_are_negotiated_to_the_highest_common_one() {
    assert_eq!(negotiate(&[1, 2]), Ok(2));
    assert_eq!(negotiate(&[2, 7]), Ok(2));
    let err = negotiate(&[1, 3]).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedVersion);
    assert_eq!(
        err.message,
        "no common protocol version: the client speaks 1, 3, this side 2"
    );
    // A version 1 client (one "v") hears it before anything else.
    let err = decode_client(r#"{"type":"hello","v":1,"sent_ms":"x"}"#).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedVersion);
    // A future client that also speaks 2 is welcome.
    let ok = decode_client(
        r#"{"type":"hello","versions":[2,3],"token":"","name":"Ada","sent_ms":1,"future":true}"#,
    );
    assert!(ok.is_ok(), "{ok:?}");
    let err = decode_server(r#"{"type":"welcome","v":3,"member":1,"sent_ms":1}"#).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedVersion);
}

#[test]
fn a_full_queue_is_paged_within_the_frame_limit() {
    let media = "m".repeat(2048);
    let items: Vec<QueueItem> = (1..=1000)
        .map(|id| QueueItem {
            id,
            media: media.clone(),
        })
        .collect();
    let pages = queue_pages(77, &items);
    assert_eq!(pages.len(), 1000usize.div_ceil(QUEUE_PAGE_ITEMS));
    let mut seen = 0;
    for page in pages {
        let text = encode(&Stamped::new(1.0, page.clone()));
        assert!(
            text.len() <= MAX_SERVER_MESSAGE_BYTES,
            "{} bytes",
            text.len()
        );
        let back = decode_server(&text).unwrap();
        let ServerMessage::Queue {
            seq,
            offset,
            total,
            items,
        } = back.msg
        else {
            panic!("not a queue page")
        };
        assert_eq!((seq, offset, total), (77, seen as u64, 1000));
        seen += items.len();
    }
    assert_eq!(seen, 1000);
    // A snapshot of that room carries the first page and fits too.
    let snapshot = RoomSnapshot {
        seq: 77,
        playback: playback(),
        pending: Vec::new(),
        queue_total: 1000,
        queue: items[..QUEUE_PAGE_ITEMS].to_vec(),
        members: Vec::new(),
        members_total: None,
        waiting: Vec::new(),
        policy: RoomPolicy {
            behind: Behind::Wait,
            wait_timeout_ms: 10_000.0,
            start_ahead_ms: 0.0,
            start_timeout_ms: 5000.0,
        },
    };
    let text = encode(&Stamped::new(1.0, ServerMessage::Snapshot(snapshot)));
    assert!(text.len() <= MAX_SERVER_MESSAGE_BYTES);
    assert!(decode_server(&text).is_ok());
}

#[test]
fn a_full_room_goes_out_in_small_member_pages() {
    let mut room = Room::default();
    for i in 1..=MAX_MEMBERS as u64 {
        room.join(MemberId(i), Role::member(), 0.0).unwrap();
    }
    let policy = RoomPolicy::of(room.config());
    // Long names: the largest a member can be on the wire.
    let name = |id: MemberId| format!("{:x<64}", id.0);
    let (first, rest) = snapshot_messages(&room.snapshot(0.0), policy, &name);
    assert_eq!(first.members.len(), MEMBER_PAGE_ITEMS);
    assert_eq!(first.members_total, Some(MAX_MEMBERS as u64));
    let mut frames = vec![ServerMessage::Snapshot(first)];
    frames.extend(rest);
    let mut ids = Vec::new();
    for msg in frames {
        let text = encode(&Stamped::new(1.0, msg));
        assert!(text.len() < 4096, "a {} byte frame", text.len());
        match decode_server(&text).unwrap().msg {
            ServerMessage::Snapshot(s) => ids.extend(s.members.iter().map(|m| m.id.0)),
            ServerMessage::Members {
                offset,
                total,
                members,
            } => {
                assert_eq!((offset, total), (ids.len() as u64, MAX_MEMBERS as u64));
                ids.extend(members.iter().map(|m| m.id.0));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ids, (1..=MAX_MEMBERS as u64).collect::<Vec<_>>());
    // A room that fits one page says nothing more.
    let mut small = Room::default();
    small.join(MemberId(1), Role::member(), 0.0).unwrap();
    let (first, rest) = snapshot_messages(&small.snapshot(0.0), policy, &name);
    assert_eq!((first.members.len(), first.members_total), (1, None));
    assert!(rest.is_empty());
}

#[test]
fn error_messages_are_cleaned_and_bounded() {
    let err = ProtocolError::new(ErrorCode::Malformed, format!("a\u{7}b{}", "x".repeat(1000)));
    assert!(err.message.starts_with("a\u{FFFD}b"));
    assert!(err.message.chars().count() <= MAX_ERROR_MESSAGE_CHARS);
    assert_eq!(
        err.to_string(),
        format!("{} (malformed)", err.message),
        "display: message (code)"
    );
    let with_id = ProtocolError::new(ErrorCode::Stale, "old").with_request_id(4);
    assert_eq!(with_id.to_string(), "old (stale) for request 4");
}

// ---------------------------------------------------------------------------
// (3) Bad input: the right code, never a panic.

#[test]
fn bad_client_input_is_refused_with_the_right_code() {
    let big = format!(
        r#"{{"type":"chat","text":"{}","sent_ms":1}}"#,
        "a".repeat(MAX_MESSAGE_BYTES)
    );
    let cases: Vec<(String, ErrorCode)> = vec![
        (big, ErrorCode::TooLarge),
        ("not json".into(), ErrorCode::Malformed),
        (r#"{"type":"launch","sent_ms":1}"#.into(), ErrorCode::UnknownType),
        (r#"{"type":"ping","id":1}"#.into(), ErrorCode::Malformed),
        (r#"{"type":"ping","id":1,"sent_ms":-1}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"ping","id":1,"sent_ms":1e14}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"ping","id":1,"sent_ms":1e400}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"ping","id":1,"sent_ms":null}"#.into(), ErrorCode::Malformed),
        (r#"{"type":"ping","id":9007199254740992,"sent_ms":1}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"hello","versions":[1],"token":"t","name":"Ada","sent_ms":1}"#.into(), ErrorCode::UnsupportedVersion),
        (r#"{"type":"hello","versions":[],"token":"t","name":"Ada","sent_ms":1}"#.into(), ErrorCode::UnsupportedVersion),
        (r#"{"type":"hello","token":"t","name":"Ada","sent_ms":1}"#.into(), ErrorCode::Malformed),
        (r#"{"type":"hello","versions":[2],"token":"t","name":" ","sent_ms":1}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"command","id":1,"based_on_seq":0,"command":"seek","position_ms":-1,"sent_ms":1}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"command","id":1,"based_on_seq":0,"command":"rewind","sent_ms":1}"#.into(), ErrorCode::Malformed),
        (r#"{"type":"report","position_ms":1,"sampled_at_ms":5,"rate":1,"rtt_ms":1,"delay_ms":1,"offset_uncertainty_ms":1,"sent_ms":4}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"report","position_ms":1,"sampled_at_ms":1,"rate":17,"rtt_ms":1,"delay_ms":1,"offset_uncertainty_ms":1,"sent_ms":4}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"report","position_ms":1,"sampled_at_ms":1,"rate":1,"rtt_ms":1,"delay_ms":-1,"offset_uncertainty_ms":1,"sent_ms":4}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"chat","text":"hi\u0007","sent_ms":1}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"ready","position_ms":NaN,"sent_ms":1}"#.into(), ErrorCode::Malformed),
    ];
    for (input, code) in cases {
        let got = decode_client(&input);
        assert_eq!(
            got.as_ref().map_err(|e| e.code).err(),
            Some(code),
            "{input}: {got:?}"
        );
    }
    let refused = decode_client(
        r#"{"type":"command","id":8,"based_on_seq":41,"command":"set_rate","rate":10,"sent_ms":1}"#,
    )
    .unwrap_err();
    assert_eq!(refused.request_id, Some(8));
}

#[test]
fn bad_server_input_is_refused_with_the_right_code() {
    let p = r#"{"media":"v","playing":true,"position_ms":0,"at_ms":10,"rate":1,"seq":5}"#;
    let policy = r#"{"behind":"wait","wait_timeout_ms":1,"start_ahead_ms":0,"start_timeout_ms":1}"#;
    let cases: Vec<(String, ErrorCode)> = vec![
        (r#"{"type":"pong","id":1,"t0_ms":1,"t1_ms":5,"sent_ms":4}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"welcome","v":1,"member":1,"sent_ms":1}"#.into(), ErrorCode::UnsupportedVersion),
        (format!(r#"{{"type":"state","playback":{},"sent_ms":1}}"#, p.replace("\"rate\":1", "\"rate\":5")), ErrorCode::InvalidValue),
        (r#"{"type":"queue","seq":1,"offset":5,"total":5,"items":[{"id":1,"media":"v"}],"sent_ms":1}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"waiting","members":[{"member":1,"deadline_ms":-5}],"sent_ms":1}"#.into(), ErrorCode::InvalidValue),
        // A member page past its total, or a room over the limit.
        (r#"{"type":"members","offset":5,"total":5,"members":[{"id":1,"name":"a","role":"viewer","buffering":false}],"sent_ms":1}"#.into(), ErrorCode::InvalidValue),
        (r#"{"type":"members","offset":0,"total":1001,"members":[],"sent_ms":1}"#.into(), ErrorCode::InvalidValue),
        // Too many mentions, or a mention that is no member id.
        (format!(r#"{{"type":"chat","from":1,"text":"hi","mentions":[{}],"sent_ms":1}}"#, vec!["2"; 33].join(",")), ErrorCode::InvalidValue),
        (r#"{"type":"chat","from":1,"text":"hi","mentions":[9007199254740992],"sent_ms":1}"#.into(), ErrorCode::InvalidValue),
        // Pending states out of order, or above the room's seq.
        (format!(r#"{{"type":"snapshot","seq":5,"playback":{p},"pending":[{p}],"queue_total":0,"queue":[],"members":[],"waiting":[],"policy":{policy},"sent_ms":1}}"#), ErrorCode::InvalidValue),
        (format!(r#"{{"type":"snapshot","seq":4,"playback":{p},"pending":[],"queue_total":0,"queue":[],"members":[],"waiting":[],"policy":{policy},"sent_ms":1}}"#), ErrorCode::InvalidValue),
    ];
    for (input, code) in cases {
        let got = decode_server(&input);
        assert_eq!(
            got.as_ref().map_err(|e| e.code).err(),
            Some(code),
            "{input}: {got:?}"
        );
    }
}

#[test]
fn encoding_does_not_validate_but_the_receiver_refuses_nan() {
    let text = encode(&Stamped::new(
        f64::NAN,
        ClientMessage::Ready { position_ms: 1.0 },
    ));
    assert_eq!(decode_client(&text).unwrap_err().code, ErrorCode::Malformed);
    let text = encode(&Stamped::new(
        1.0,
        ClientMessage::Ready {
            position_ms: f64::NAN,
        },
    ));
    assert!(decode_client(&text).is_err());
}

// ---------------------------------------------------------------------------
// (4) Properties.

const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    " ",
    "\"",
    "\\",
    "\"type\"",
    "\"type\":",
    "\"hello\"",
    "\"ping\"",
    "\"command\"",
    "\"buffering\"",
    "\"ready\"",
    "\"report\"",
    "\"chat\"",
    "\"typing\"",
    "\"reaction\"",
    "\"pong\"",
    "\"v\"",
    "\"id\"",
    "\"t0_ms\"",
    "\"position_ms\"",
    "\"rate\"",
    "\"text\"",
    "\"active\"",
    "\"emoji\"",
    "\"seek\"",
    "\"set_rate\"",
    "\"play\"",
    "\"based_on_seq\"",
    "\"sent_ms\"",
    "\"versions\"",
    "[2]",
    "[1,2]",
    "[]",
    "0",
    "1",
    "-1",
    "1.5",
    "90000",
    "0.25",
    "4",
    "10",
    "1e400",
    "-1e400",
    "1e14",
    "1e-7",
    "9007199254740991",
    "9007199254740992",
    "18446744073709551616",
    "NaN",
    "Infinity",
    "null",
    "true",
    "false",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"é\"",
    "\"🎉\"",
    "\"\\n\"",
    "\"x\"",
];

/// Every client type with its fields and values for them, most of them
/// valid, so that a good share of the objects built from them decode.
type Shape = (
    &'static str,
    &'static [(&'static str, &'static [&'static str])],
);

const SHAPES: &[Shape] = &[
    (
        "hello",
        &[
            ("versions", &["[2]", "[1,2]", "[1]", "[]", "2", "[\"2\"]"]),
            ("token", &[r#""t""#, r#""""#, r#""a\u001bb""#]),
            (
                "name",
                &[r#""Ada""#, r#""Zoë 🎉""#, r#"" ""#, r#""a\u202e""#],
            ),
            ("resume", &[r#"{"member":17,"last_seq":41}"#, "null", "{}"]),
        ],
    ),
    ("ping", &[("id", &["12", "0", "-1", "9007199254740992"])]),
    (
        "command",
        &[
            ("id", &["7", "9007199254740991", "1.5"]),
            ("based_on_seq", &["41", "0"]),
            (
                "command",
                &[
                    r#""play""#,
                    r#""pause""#,
                    r#""seek""#,
                    r#""set_rate""#,
                    r#""load""#,
                    r#""queue_add""#,
                    r#""queue_remove""#,
                    r#""queue_reorder""#,
                    r#""rewind""#,
                ],
            ),
            ("position_ms", &["90000", "0.001", "-1", "604800001"]),
            ("rate", &["1.5", "0.25", "4", "0", "10"]),
            ("media", &[r#""vid_7f3a""#, r#""""#]),
            ("item", &["3", "-3"]),
            ("to", &["0", "99"]),
        ],
    ),
    (
        "buffering",
        &[("position_ms", &["125300", "0", "-0.5", "1e300"])],
    ),
    ("ready", &[("position_ms", &["125300.25", "7", "NaN"])]),
    (
        "report",
        &[
            ("position_ms", &["126040.25", "0"]),
            ("sampled_at_ms", &["63000", "0", "99999999", "-1"]),
            ("rate", &["1.02", "0", "16", "17"]),
            ("rtt_ms", &["38.5", "0", "-1"]),
            ("delay_ms", &["31", "0", "3600001"]),
            ("offset_uncertainty_ms", &["4.2", "3600000", "3600001"]),
        ],
    ),
    (
        "chat",
        &[(
            "text",
            &[
                r#""hi""#,
                r#""a\nb""#,
                r#""é漢🎉""#,
                r#""a\u0007""#,
                r#""""#,
                "5",
            ],
        )],
    ),
    ("typing", &[("active", &["true", "false", "1"])]),
    (
        "reaction",
        &[
            ("emoji", &[r#""🎉""#, r#""👨‍👩‍👧‍👦""#, r#""a b""#]),
            ("at_position_ms", &["126500", "null", "-1"]),
        ],
    ),
];

fn fragment_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|parts| parts.concat())
}

fn message_like() -> impl Strategy<Value = String> {
    (
        prop::sample::select(SHAPES),
        prop::collection::vec((0u8..10, any::<prop::sample::Index>()), 10),
        prop::option::of(prop::sample::select(FRAGMENTS)),
        prop::sample::select(&["1", "0", "-1", "null", "1e400", "63001.5"][..]),
    )
        .prop_map(|((kind, fields), picks, junk, sent)| {
            let mut text = format!(r#"{{"type":"{kind}""#);
            for ((key, values), (dice, pick)) in fields.iter().zip(picks) {
                // One field in ten is left out.
                if dice > 0 {
                    text.push_str(&format!(r#","{key}":{}"#, pick.get(values)));
                }
            }
            if let Some(junk) = junk {
                text.push_str(&format!(r#","extra":{junk}"#));
            }
            text.push_str(&format!(r#","sent_ms":{sent}}}"#));
            text
        })
}

/// Whatever decoding says, it says it without panicking; a success
/// re-encodes to an equal message, and a refusal makes a valid `error`.
fn check_decoding(input: &str) -> Result<(), TestCaseError> {
    match decode_client(input) {
        Ok(frame) => {
            let again = decode_client(&encode(&frame));
            prop_assert_eq!(again, Ok(frame));
        }
        Err(err) => {
            let reply = Stamped::new(5.0, ServerMessage::from(err));
            prop_assert_eq!(decode_server(&encode(&reply)), Ok(reply));
        }
    }
    let _ = decode_server(input);
    Ok(())
}

// Positions and times on a grid of exact short decimals.
fn position() -> impl Strategy<Value = f64> {
    (0u64..=604_800_000_000).prop_map(|us| us as f64 / 1000.0)
}

fn timestamp() -> impl Strategy<Value = f64> {
    (0u64..1 << 40).prop_map(|n| n as f64 / 8.0)
}

fn duration() -> impl Strategy<Value = f64> {
    (0u64..=3_600_000_000).prop_map(|us| us as f64 / 1000.0)
}

fn room_rate() -> impl Strategy<Value = f64> {
    (250u64..=4000).prop_map(|n| n as f64 / 1000.0)
}

fn wire_id() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, 0u64..=(1 << 53) - 1]
}

const NAME: &str = "[a-zA-Z0-9é漢🎉][a-zA-Z0-9 é漢🎉._-]{0,63}";
const ROLE: &str = "[a-z][a-z_-]{0,31}";

fn media() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_:/.?=&-]{1,80}"
}

fn command_strategy() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Play),
        Just(Command::Pause),
        position().prop_map(|position_ms| Command::Seek { position_ms }),
        room_rate().prop_map(|rate| Command::SetRate { rate }),
        media().prop_map(|media| Command::Load { media }),
        media().prop_map(|media| Command::QueueAdd { media }),
        wire_id().prop_map(|item| Command::QueueRemove { item }),
        (wire_id(), 0usize..1000).prop_map(|(item, to)| Command::QueueReorder { item, to }),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            NAME,
            "[a-zA-Z0-9.]{0,40}",
            prop::option::of((wire_id(), wire_id()))
        )
            .prop_map(|(name, token, resume)| ClientMessage::Hello {
                versions: vec![1, PROTOCOL_VERSION],
                token,
                name,
                resume: resume.map(|(m, s)| Resume {
                    member: MemberId(m),
                    last_seq: s,
                }),
            }),
        wire_id().prop_map(|id| ClientMessage::Ping { id }),
        (wire_id(), wire_id(), command_strategy()).prop_map(|(id, based_on_seq, command)| {
            ClientMessage::Command {
                id,
                based_on_seq,
                command,
            }
        }),
        position().prop_map(|position_ms| ClientMessage::Buffering { position_ms }),
        position().prop_map(|position_ms| ClientMessage::Ready { position_ms }),
        (
            position(),
            (0u64..=16_000).prop_map(|n| n as f64 / 1000.0),
            duration(),
            duration(),
            duration(),
            prop::option::of(duration()),
            prop::option::of(position()),
        )
            .prop_map(|(position_ms, rate, rtt_ms, delay_ms, unc, seek, ahead)| {
                ClientMessage::Report {
                    position_ms,
                    sampled_at_ms: 0.0,
                    rate,
                    rtt_ms,
                    delay_ms,
                    offset_uncertainty_ms: unc,
                    seek_latency_ms: seek,
                    buffered_ahead_ms: ahead,
                }
            }),
        "[a-z]{1,20}( [a-z]{1,10}){0,3}".prop_map(|text| ClientMessage::Chat { text }),
        any::<bool>().prop_map(|active| ClientMessage::Typing { active }),
        prop::option::of(position()).prop_map(|at_position_ms| ClientMessage::Reaction {
            emoji: "🎉".into(),
            at_position_ms,
        }),
    ]
}

fn playback_strategy() -> impl Strategy<Value = Playback> {
    (
        prop::option::of(media()),
        any::<bool>(),
        position(),
        timestamp(),
        room_rate(),
        0u64..1000,
    )
        .prop_map(|(media, playing, position_ms, at_ms, rate, seq)| Playback {
            media,
            playing,
            position_ms,
            at_ms,
            rate,
            seq,
        })
}

fn member_strategy() -> impl Strategy<Value = MemberInfo> {
    (
        wire_id(),
        NAME,
        ROLE,
        any::<bool>(),
        proptest::option::of(-10_000.0f64..10_000.0),
        proptest::option::of(0.0f64..5_000.0),
    )
        .prop_map(
            |(id, name, role, buffering, sync_error_ms, rtt_ms)| MemberInfo {
                id: MemberId(id),
                name,
                role,
                buffering,
                sync_error_ms,
                rtt_ms,
                account: None,
            },
        )
}

fn snapshot_strategy() -> impl Strategy<Value = RoomSnapshot> {
    (
        playback_strategy(),
        prop::collection::vec((wire_id(), media()), 0..5),
        prop::collection::vec(member_strategy(), 0..4),
        prop::collection::vec((wire_id(), timestamp()), 0..3),
        duration(),
        0u64..5,
    )
        .prop_map(|(playback, queue, members, waiting, timeout, pending)| {
            let pending: Vec<Playback> = (1..=pending)
                .map(|i| Playback {
                    seq: playback.seq + i,
                    at_ms: playback.at_ms + i as f64,
                    ..playback.clone()
                })
                .collect();
            RoomSnapshot {
                seq: pending.last().map_or(playback.seq, |p| p.seq) + 1,
                playback,
                pending,
                queue_total: queue.len() as u64,
                queue: queue
                    .into_iter()
                    .map(|(id, media)| QueueItem { id, media })
                    .collect(),
                members,
                members_total: None,
                waiting: waiting
                    .into_iter()
                    .map(|(m, d)| Waited {
                        member: MemberId(m),
                        deadline_ms: d,
                    })
                    .collect(),
                policy: RoomPolicy {
                    behind: Behind::Leave,
                    wait_timeout_ms: timeout,
                    start_ahead_ms: 0.0,
                    start_timeout_ms: timeout,
                },
            }
        })
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (wire_id(), prop::option::of(snapshot_strategy())).prop_map(|(m, room)| {
            ServerMessage::Welcome {
                v: PROTOCOL_VERSION,
                member: MemberId(m),
                room,
            }
        }),
        (wire_id(), timestamp()).prop_map(|(id, t0_ms)| ServerMessage::Pong {
            id,
            t0_ms,
            t1_ms: 0.0,
        }),
        snapshot_strategy().prop_map(ServerMessage::Snapshot),
        (
            playback_strategy(),
            prop::option::of((wire_id(), wire_id()))
        )
            .prop_map(|(playback, cause)| ServerMessage::State {
                playback,
                cause: cause.map(|(by, request_id)| Cause {
                    by: MemberId(by),
                    request_id,
                }),
            }),
        (wire_id(), prop::collection::vec((wire_id(), media()), 0..5)).prop_map(|(seq, items)| {
            ServerMessage::Queue {
                seq,
                offset: 0,
                total: items.len() as u64,
                items: items
                    .into_iter()
                    .map(|(id, media)| QueueItem { id, media })
                    .collect(),
            }
        }),
        (0u64..100, prop::collection::vec(member_strategy(), 0..3)).prop_map(
            |(offset, members)| ServerMessage::Members {
                offset,
                total: offset + members.len() as u64,
                members,
            }
        ),
        member_strategy().prop_map(|member| ServerMessage::Presence {
            event: PresenceEvent::Updated,
            member,
        }),
        (
            wire_id(),
            "[a-z]{1,30}",
            proptest::option::of(wire_id()),
            prop::collection::vec(wire_id(), 0..4)
        )
            .prop_map(|(from, text, id, mentions)| ServerMessage::Chat {
                from: MemberId(from),
                text,
                id,
                mentions: mentions.into_iter().map(MemberId).collect(),
            }),
        (wire_id(), "[a-z]{1,30}").prop_map(|(id, text)| ServerMessage::ChatEdited { id, text }),
        wire_id().prop_map(|id| ServerMessage::ChatDeleted { id }),
        "[a-z ]{0,100}".prop_map(|m| ProtocolError::new(ErrorCode::Stale, m).to_message()),
    ]
}

proptest! {
    #[test]
    fn decoding_arbitrary_text_never_panics(input in any::<String>()) {
        check_decoding(&input)?;
    }

    #[test]
    fn decoding_json_fragments_never_panics(input in fragment_soup()) {
        check_decoding(&input)?;
    }

    #[test]
    fn decoding_message_like_objects_is_consistent(input in message_like()) {
        check_decoding(&input)?;
    }

    #[test]
    fn valid_client_messages_round_trip(msg in client_message(), sent in timestamp()) {
        prop_assert_eq!(msg.validate(), Ok(()));
        let frame = Stamped::new(sent, msg);
        let text = encode(&frame);
        prop_assert!(text.len() <= MAX_MESSAGE_BYTES);
        prop_assert_eq!(decode_client(&text), Ok(frame));
    }

    #[test]
    fn valid_server_messages_round_trip(msg in server_message(), sent in timestamp()) {
        prop_assert_eq!(msg.validate(), Ok(()));
        let frame = Stamped::new(sent, msg);
        prop_assert_eq!(decode_server(&encode(&frame)), Ok(frame));
    }
}

/// Positions of 16 and more significant digits round-trip exactly (the
/// crate turns on serde_json's `float_roundtrip`).
#[test]
fn full_precision_floats_round_trip() {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let position_ms = (x >> 11) as f64 / (1u64 << 53) as f64 * 604_800_000.0;
        let frame = Stamped::new(1.0, ClientMessage::Ready { position_ms });
        assert_eq!(decode_client(&encode(&frame)), Ok(frame));
    }
}
