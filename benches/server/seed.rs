//! Seeding a database through the core's repositories: channel owners, one
//! member, channels of every visibility, and generated videos made ready
//! (created, taken by a worker, published), in a few large transactions.

use videosync::core::catalog::{NewVideo, Rendition, StatusChange};
use videosync::core::db::{Channels, Members, NewChannel, NewUser, Role, User, Users, Videos};
use videosync::core::sql::Database;
use videosync::core::{ChannelId, SystemClock};

use super::gen;
use super::Watch;

/// What the seeding made.
#[derive(Debug, Clone)]
pub(crate) struct Seeded {
    /// The user the load and search runs act as: a viewer in a few
    /// channels of each visibility.
    pub(crate) member: User,
    /// A public channel `member` belongs to.
    pub(crate) member_channel: ChannelId,
    /// How long the videos took to seed, seconds.
    pub(crate) seconds: f64,
}

/// The member's username; its password is [`PASSWORD`].
pub(crate) const MEMBER: &str = "bench-member";
/// Every seeded account's password.
pub(crate) const PASSWORD: &str = "correct horse battery staple";
/// Channels the member belongs to: the first this many (3 private,
/// 3 unlisted, the rest public).
const MEMBER_OF: usize = 12;
/// Videos per transaction.
const CHUNK: usize = 2_000;

/// Seeds `videos` generated videos over `channels` channels, with
/// `concurrency` transactions at once (1 on SQLite, whose writers queue).
pub(crate) async fn seed(
    clock: &SystemClock,
    db: &Database,
    seed: u64,
    (videos, channels): (usize, usize),
    password_hash: &str,
    concurrency: usize,
) -> Seeded {
    let owners = (channels / 5).max(10);
    let mut tx = db.begin().await.unwrap();
    let mut owner_ids = Vec::with_capacity(owners);
    for i in 0..owners {
        let u = tx
            .create_user(NewUser::new(format!("owner-{i}"), password_hash))
            .await
            .unwrap();
        owner_ids.push(u.id);
    }
    let member = tx
        .create_user(NewUser::new(MEMBER, password_hash))
        .await
        .unwrap();
    let mut channel_ids = Vec::with_capacity(channels);
    for i in 0..channels {
        let mut new = NewChannel::new(
            owner_ids[i % owners],
            gen::channel_name(seed, i),
            gen::channel_visibility(i),
        );
        new.description = format!("Channel {i} of the benchmark catalog.");
        let c = tx.create_channel(new).await.unwrap();
        if i < MEMBER_OF {
            tx.add_member(c.id, member.id, Role::Viewer).await.unwrap();
        }
        channel_ids.push(c.id);
    }
    tx.commit().await.unwrap();
    let member_channel = (0..MEMBER_OF)
        .find(|&i| gen::channel_visibility(i) == videosync::core::db::Visibility::Public)
        .map(|i| channel_ids[i])
        .expect("a public channel among the member's");

    let w = Watch::start(clock);
    let chunks: Vec<(usize, usize)> = (0..videos)
        .step_by(CHUNK)
        .map(|start| (start, (start + CHUNK).min(videos)))
        .collect();
    let channel_ids_arc = std::sync::Arc::new(channel_ids.clone());
    let owner_ids = std::sync::Arc::new(owner_ids);
    for batch in chunks.chunks(concurrency.max(1)) {
        let mut tasks = Vec::new();
        for &(start, end) in batch {
            let (db, channels, owners) = (db.clone(), channel_ids_arc.clone(), owner_ids.clone());
            tasks.push(tokio::spawn(async move {
                let mut tx = db.begin().await.unwrap();
                for i in start..end {
                    let g = gen::video(seed, i, channels.len());
                    let v = tx
                        .create_video(NewVideo {
                            owner: Some(owners[g.channel % owners.len()]),
                            channel_id: Some(channels[g.channel]),
                            description: g.description,
                            tags: g.tags,
                            visibility: g.visibility,
                            source_key: Some(format!("uploads/bench-{i}.mp4")),
                            ..NewVideo::titled(g.title)
                        })
                        .await
                        .unwrap();
                    let fence = format!("seed-{i}");
                    tx.set_video_status(
                        v.id,
                        None,
                        StatusChange::Processing {
                            fence: fence.clone(),
                        },
                    )
                    .await
                    .unwrap();
                    let prefix = format!("videos/{}/hls", v.id);
                    tx.set_video_status(
                        v.id,
                        None,
                        StatusChange::Ready {
                            fence,
                            renditions: vec![rendition(&prefix)],
                            output_prefix: prefix,
                        },
                    )
                    .await
                    .unwrap();
                }
                tx.commit().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    Seeded {
        member,
        member_channel,
        seconds: w.secs(),
    }
}

/// One 720p rung, so the video records are the size of real ones.
fn rendition(prefix: &str) -> Rendition {
    Rendition {
        name: "720p".into(),
        width: 1280,
        height: 720,
        bandwidth: 3_300_000,
        average_bandwidth: 3_000_000,
        codecs: "avc1.64001f,mp4a.40.2".into(),
        frame_rate: 30.0,
        playlist: format!("{prefix}/720p/index.m3u8"),
    }
}
