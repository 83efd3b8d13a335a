//! The [`crate::EventBus`] conformance suite.

use bytes::Bytes;

use super::{unique_name, BusFixture, WAIT};
use crate::bus::{Delivery, Subscription, Topic, MAX_EVENT_LEN, SUBSCRIPTION_BUFFER};
use crate::ErrorKind;

fn topic() -> Topic {
    Topic::parse(&unique_name("conformance.")).unwrap()
}

async fn next(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("a delivery within the wait")
        .expect("the bus is open")
}

async fn next_event(sub: &mut Subscription) -> Bytes {
    match next(sub).await {
        Delivery::Event(e) => e.payload,
        other => panic!("expected an event, got {other:?}"),
    }
}

pub async fn delivers_to_every_subscriber_in_order(fx: BusFixture) {
    let t = topic();
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(fx.bus.subscribe(&t).await.unwrap());
    }
    for i in 0..20 {
        fx.bus
            .publish(&t, Bytes::from(format!("event {i}")))
            .await
            .unwrap();
    }
    for sub in &mut subs {
        for i in 0..20 {
            assert_eq!(next_event(sub).await, format!("event {i}"));
        }
    }
}

pub async fn batches_keep_their_order_and_are_refused_whole(fx: BusFixture) {
    let (a, b) = (topic(), topic());
    let mut sub_a = fx.bus.subscribe(&a).await.unwrap();
    let mut sub_b = fx.bus.subscribe(&b).await.unwrap();
    let events: Vec<(Topic, Bytes)> = (0..40)
        .map(|i| {
            let t = if i % 3 == 0 { &b } else { &a };
            (t.clone(), Bytes::from(format!("event {i}")))
        })
        .collect();
    fx.bus.publish_batch(events).await.unwrap();
    fx.bus.publish_batch(Vec::new()).await.unwrap();
    for i in (0..40).filter(|i| i % 3 != 0) {
        assert_eq!(next_event(&mut sub_a).await, format!("event {i}"));
    }
    for i in (0..40).filter(|i| i % 3 == 0) {
        assert_eq!(next_event(&mut sub_b).await, format!("event {i}"));
    }
    // An oversized payload anywhere refuses the whole batch.
    let refused = vec![
        (a.clone(), Bytes::from("never")),
        (a.clone(), Bytes::from(vec![0u8; MAX_EVENT_LEN + 1])),
    ];
    let err = fx.bus.publish_batch(refused).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    fx.bus.publish(&a, Bytes::from("after")).await.unwrap();
    assert_eq!(next_event(&mut sub_a).await, "after");
}

pub async fn topics_are_isolated(fx: BusFixture) {
    let (a, b) = (topic(), topic());
    let mut sub_a = fx.bus.subscribe(&a).await.unwrap();
    fx.bus.publish(&b, Bytes::from("for b")).await.unwrap();
    fx.bus.publish(&a, Bytes::from("for a")).await.unwrap();
    let got = next(&mut sub_a).await;
    match got {
        Delivery::Event(e) => {
            assert_eq!(e.topic, a);
            assert_eq!(e.payload, "for a");
        }
        other => panic!("{other:?}"),
    }
}

pub async fn delivers_across_handles(fx: BusFixture) {
    let t = topic();
    let mut sub = fx.other.subscribe(&t).await.unwrap();
    fx.bus
        .publish(&t, Bytes::from_static(b"\x00binary\xffpayload"))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut sub).await,
        Bytes::from_static(b"\x00binary\xffpayload")
    );
}

pub async fn dropped_subscriptions_are_fine(fx: BusFixture) {
    let t = topic();
    let sub = fx.bus.subscribe(&t).await.unwrap();
    drop(sub);
    fx.bus
        .publish(&t, Bytes::from("nobody listens"))
        .await
        .unwrap();
    let mut again = fx.bus.subscribe(&t).await.unwrap();
    fx.bus.publish(&t, Bytes::from("back")).await.unwrap();
    // An event published just before a subscribe may still reach it (on
    // Redis, when the handle's connection was still subscribed to the
    // topic); nothing else may.
    let mut got = next_event(&mut again).await;
    if got == "nobody listens" {
        got = next_event(&mut again).await;
    }
    assert_eq!(got, "back");
}

pub async fn oversized_events_are_rejected(fx: BusFixture) {
    let t = topic();
    let err = fx
        .bus
        .publish(&t, Bytes::from(vec![0u8; MAX_EVENT_LEN + 1]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

pub async fn slow_subscribers_lag_without_blocking(fx: BusFixture) {
    let t = topic();
    let mut slow = fx.bus.subscribe(&t).await.unwrap();
    let mut fast = fx.bus.subscribe(&t).await.unwrap();
    let total = SUBSCRIPTION_BUFFER + 50;
    for i in 0..total {
        fx.bus
            .publish(&t, Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    // Once another subscriber of the same handle has seen the last event,
    // every event has reached the local buffers (on Redis, the forwarder has
    // had them all), so the slow one, which read nothing, has overflowed by
    // exactly 50, however the forwarding was scheduled.
    let last = (total - 1).to_string();
    loop {
        match next(&mut fast).await {
            Delivery::Event(e) if e.payload == last => break,
            Delivery::Event(_) | Delivery::Lagged(_) => {}
            Delivery::Disconnected => panic!("no connection was lost"),
        }
    }
    let (mut events, mut lagged) = (0u64, 0u64);
    let mut first = None;
    loop {
        match next(&mut slow).await {
            Delivery::Lagged(n) => lagged += n,
            Delivery::Event(e) => {
                first.get_or_insert(e.payload.clone());
                events += 1;
                if e.payload == last {
                    break;
                }
            }
            Delivery::Disconnected => panic!("no connection was lost"),
        }
    }
    assert_eq!(lagged, 50, "the oldest events past the buffer are reported");
    assert_eq!(events, SUBSCRIPTION_BUFFER as u64);
    assert_eq!(first, Some(Bytes::from("50")), "the newest are kept");
}

pub async fn payloads_of_exactly_the_limit_are_delivered(fx: BusFixture) {
    let t = topic();
    let mut sub = fx.other.subscribe(&t).await.unwrap();
    let payload = Bytes::from(vec![7u8; MAX_EVENT_LEN]);
    fx.bus.publish(&t, payload.clone()).await.unwrap();
    assert_eq!(next_event(&mut sub).await, payload);
}
