//! Exec codec tests: known encodings, limits, round trips and hostile bytes.

use super::*;
use bytes::BytesMut;
use proptest::prelude::*;

fn encode_request(r: &Request) -> BytesMut {
    let mut out = BytesMut::new();
    r.encode(&mut out).expect("encode");
    out
}

fn encode_reply(r: &Reply) -> BytesMut {
    let mut out = BytesMut::new();
    r.encode(&mut out).expect("encode");
    out
}

#[test]
fn request_known_encoding() {
    let mut r = Request::new("echo", ["hi"]);
    r.timeout = Duration::from_millis(300);
    r.max_output = 5;
    let out = encode_request(&r);
    // len, flags, timeout 300 = ac 02, cap 5, "echo", 1 arg "hi"
    assert_eq!(
        &out[..],
        &[13, 0, 0xac, 0x02, 5, 4, b'e', b'c', b'h', b'o', 1, 2, b'h', b'i'][..]
    );
    assert_eq!(out.len(), r.encoded_len());
}

#[test]
fn reply_known_encodings() {
    assert_eq!(
        &encode_reply(&Reply::Stdout(Bytes::from_static(b"ok")))[..],
        &[3, 1, b'o', b'k'][..]
    );
    let exit = Reply::Exit(Exit {
        status: ExitStatus::Code(-1),
        output_truncated: true,
    });
    assert_eq!(&encode_reply(&exit)[..], &[4, 3, 0, 1, 1][..]);
    let timeout = Reply::Exit(Exit {
        status: ExitStatus::KilledByTimeout,
        output_truncated: false,
    });
    assert_eq!(&encode_reply(&timeout)[..], &[3, 3, 2, 0][..]);
}

#[test]
fn incomplete_frames_are_not_errors() {
    let full = encode_request(&Request::new("ls", ["-l", "/tmp"]));
    for cut in 0..full.len() {
        let mut part = BytesMut::from(&full[..cut]);
        assert_eq!(Request::decode(&mut part), Ok(None), "cut at {cut}");
        assert_eq!(part.len(), cut, "nothing consumed");
    }
    let mut all = full.clone();
    all.extend_from_slice(&[9, 9]);
    assert!(Request::decode(&mut all).expect("decode").is_some());
    assert_eq!(&all[..], &[9, 9], "the next frame's bytes stay");
}

#[test]
fn oversized_lengths_are_refused_before_buffering() {
    let mut buf = BytesMut::new();
    put(&mut buf, (MAX_REQUEST_LEN + 1) as u64);
    assert!(matches!(
        Request::decode(&mut buf),
        Err(ExecWireError::FrameTooLarge { .. })
    ));
    let mut buf = BytesMut::new();
    put(&mut buf, (MAX_REPLY_LEN + 1) as u64);
    assert!(matches!(
        Reply::decode(&mut buf),
        Err(ExecWireError::FrameTooLarge { .. })
    ));
    // An argument count far beyond what the body holds.
    let mut body = BytesMut::from(&[0u8, 0, 0, 1, b'x'][..]);
    put(&mut body, MAX_ARGS as u64);
    let mut frame = BytesMut::new();
    put(&mut frame, body.len() as u64);
    frame.extend_from_slice(&body);
    assert_eq!(
        Request::decode(&mut frame),
        Err(ExecWireError::Truncated { field: "argument" })
    );
}

fn put(out: &mut BytesMut, v: u64) {
    let mut tmp = Vec::new();
    crate::varint::encode(v, &mut tmp);
    out.extend_from_slice(&tmp);
}

#[test]
fn encoder_refuses_what_a_receiver_would() {
    let mut out = BytesMut::new();
    assert_eq!(
        Request::new("", Vec::<String>::new()).encode(&mut out),
        Err(ExecWireError::EmptyProgram)
    );
    let mut big = Request::new("cat", Vec::<String>::new());
    big.stdin = Some(Bytes::from(vec![0u8; MAX_STDIN + 1]));
    assert!(matches!(
        big.encode(&mut out),
        Err(ExecWireError::FieldTooLarge { field: "stdin", .. })
    ));
    assert_eq!(
        Reply::Stdout(Bytes::new()).encode(&mut out),
        Err(ExecWireError::EmptyChunk)
    );
    assert!(Reply::Stderr(Bytes::from(vec![1u8; MAX_CHUNK + 1]))
        .encode(&mut out)
        .is_err());
    assert!(out.is_empty(), "failed encodes write nothing");
}

#[test]
fn long_error_messages_are_cut_on_a_char_boundary() {
    let reply = Reply::Error {
        kind: FailureKind::Internal,
        message: "é".repeat(MAX_MESSAGE_LEN),
    };
    let mut out = encode_reply(&reply);
    assert_eq!(out.len(), reply.encoded_len());
    match Reply::decode(&mut out) {
        Ok(Some(Reply::Error { kind, message })) => {
            assert_eq!(kind, FailureKind::Internal);
            assert_eq!(message.len(), MAX_MESSAGE_LEN);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unknown_tags_flags_and_kinds() {
    let mut buf = BytesMut::from(&[1u8, 9][..]);
    assert_eq!(Reply::decode(&mut buf), Err(ExecWireError::UnknownTag(9)));
    let mut buf = BytesMut::from(&[3u8, 3, 7, 0][..]);
    assert_eq!(
        Reply::decode(&mut buf),
        Err(ExecWireError::UnknownStatus(7))
    );
    let mut buf = BytesMut::from(&[3u8, 3, 2, 2][..]);
    assert_eq!(Reply::decode(&mut buf), Err(ExecWireError::UnknownFlags(2)));
    // An error kind from a newer peer is kept, not refused.
    let mut buf = BytesMut::from(&[3u8, 4, 99, b'x'][..]);
    assert_eq!(
        Reply::decode(&mut buf),
        Ok(Some(Reply::Error {
            kind: FailureKind::Other(99),
            message: "x".into()
        }))
    );
    let mut buf = BytesMut::from(&[6u8, 0x80, 0, 0, 1, b'x', 0][..]);
    assert!(Request::decode(&mut buf).is_err());
}

fn arb_request() -> impl Strategy<Value = Request> {
    (
        "[a-z/]{1,20}",
        proptest::collection::vec(".{0,20}", 0..6),
        any::<bool>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        0u64..(1 << 40),
        0u64..(1 << 62),
    )
        .prop_map(|(program, args, shell, stdin, ms, max_output)| Request {
            program,
            args,
            shell,
            stdin: stdin.map(Bytes::from),
            timeout: Duration::from_millis(ms),
            max_output,
        })
}

fn arb_kind() -> impl Strategy<Value = FailureKind> {
    prop_oneof![
        Just(FailureKind::BadRequest),
        Just(FailureKind::NotFound),
        Just(FailureKind::PermissionDenied),
        Just(FailureKind::ShellNotAllowed),
        Just(FailureKind::Busy),
        Just(FailureKind::SpawnFailed),
        Just(FailureKind::Internal),
        Just(FailureKind::ProgramNotAllowed),
        (9u8..=255).prop_map(FailureKind::Other),
        Just(FailureKind::Other(0)),
    ]
}

fn arb_reply() -> impl Strategy<Value = Reply> {
    let chunk = proptest::collection::vec(any::<u8>(), 1..300).prop_map(Bytes::from);
    let status = prop_oneof![
        any::<i32>().prop_map(ExitStatus::Code),
        (0..=i32::MAX).prop_map(ExitStatus::Signal),
        Just(ExitStatus::KilledByTimeout),
    ];
    prop_oneof![
        chunk.clone().prop_map(Reply::Stdout),
        chunk.prop_map(Reply::Stderr),
        (status, any::<bool>()).prop_map(|(status, output_truncated)| Reply::Exit(Exit {
            status,
            output_truncated
        })),
        (arb_kind(), ".{0,40}").prop_map(|(kind, message)| Reply::Error { kind, message }),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(r in arb_request()) {
        let mut out = encode_request(&r);
        prop_assert_eq!(out.len(), r.encoded_len());
        prop_assert_eq!(Request::decode(&mut out), Ok(Some(r)));
        prop_assert!(out.is_empty());
    }

    #[test]
    fn reply_sequences_round_trip(replies in proptest::collection::vec(arb_reply(), 0..8)) {
        let mut out = BytesMut::new();
        for r in &replies {
            r.encode(&mut out).expect("encode");
        }
        let mut back = Vec::new();
        while let Some(r) = Reply::decode(&mut out).expect("decode") {
            back.push(r);
        }
        prop_assert_eq!(back, replies);
        prop_assert!(out.is_empty());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::fuzz_frame(&data);
    }

    #[test]
    fn mutated_frames_never_panic(r in arb_request(), reply in arb_reply(), at in any::<usize>(), byte in any::<u8>()) {
        let mut out = encode_request(&r).to_vec();
        let i = at % out.len();
        out[i] = byte;
        fuzzing::fuzz_frame(&out);
        fuzzing::fuzz_frame(&out[..i]);
        let mut out = encode_reply(&reply).to_vec();
        let i = at % out.len();
        out[i] = byte;
        fuzzing::fuzz_frame(&out);
    }
}
