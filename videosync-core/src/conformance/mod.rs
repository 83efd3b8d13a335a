//! The conformance suites: one test body per contract, run unchanged against
//! every backend.
//!
//! A backend's test file builds a fixture factory and expands the suite's
//! macro, which makes one `#[tokio::test]` per case:
//!
//! ```ignore
//! mod memory {
//!     videosync_core::store_suite!(|| async {
//!         Some(videosync_core::conformance::StoreFixture::new(
//!             std::sync::Arc::new(videosync_core::store::memory::MemoryStore::new()),
//!         ))
//!     });
//! }
//! ```
//!
//! A factory returns `None` to skip when the service it needs is not
//! configured; [`service_url`] decides that, and turns the skip into a failure
//! when `VIDEOSYNC_REQUIRE_SERVICES=1` (as `make test` and CI set it).
//!
//! This module is test code shipped as a library so that backends outside
//! this crate can run it too; it panics on failure like any test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{Clock, ObjectKey};

pub mod bus;
pub mod catalog;
#[cfg(feature = "sql")]
pub mod db;
pub mod eventlog;
pub mod kv;
pub mod queue;
pub mod store;
pub mod uploads;

/// Start time of the manual clocks the suites use (2023-11-14T22:13:20Z).
pub const START: crate::Timestamp = crate::Timestamp::from_millis(1_700_000_000_000);

/// How long a suite waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// The URL of a test service from the environment variable `var`, or `None`
/// (with a note on stderr) to skip.
///
/// # Panics
/// When the variable is unset and `VIDEOSYNC_REQUIRE_SERVICES=1`: under
/// `make test` and in CI a missing service is a failure, never a skip.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("VIDEOSYNC_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{var} is not set but VIDEOSYNC_REQUIRE_SERVICES=1: start the services with `make services` \
                 (scripts/services.sh) and source their env file"
            );
            eprintln!("skipping: {var} is not set (run under `make test` to use the real service)");
            None
        }
    }
}

/// A short random name for a test's own namespace.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A database URL for a fresh Postgres schema of its own, so tests run in
/// parallel on one database without seeing each other's rows.
///
/// # Panics
/// When the server cannot be reached or the schema cannot be made.
#[cfg(feature = "postgres")]
pub async fn postgres_namespace(base_url: &str) -> String {
    use sqlx::Connection;
    let schema = unique_name("vs_t_");
    let mut conn = sqlx::PgConnection::connect(base_url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", crate::redact_url(base_url)));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("creating schema {schema}: {e}"));
    let sep = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{sep}options=-c%20search_path%3D{schema}")
}

/// A store under test and the prefix its objects go under.
pub struct StoreFixture {
    pub store: crate::store::DynObjectStore,
    pub prefix: Option<ObjectKey>,
    /// Kept alive for the test (a temporary directory, say).
    pub guard: Option<Box<dyn Any + Send>>,
    /// For a store that signs: its signer on another clock, so the suite
    /// can make URLs that expired already.
    pub signer_at: Option<SignerAt>,
    /// Whether conditional puts are atomic against concurrent writers
    /// (false for an S3 store in checked mode on a server that ignores
    /// conditional headers): the race cases then check only that the
    /// object is one winner's.
    pub atomic_conditions: bool,
}

/// Makes a store's signer on a given clock.
pub type SignerAt =
    Box<dyn Fn(Arc<dyn Clock>) -> Arc<dyn crate::store::sign::Signer> + Send + Sync>;

impl StoreFixture {
    /// A fixture using the whole store (it must be fresh).
    pub fn new(store: crate::store::DynObjectStore) -> Self {
        StoreFixture {
            store,
            prefix: None,
            guard: None,
            signer_at: None,
            atomic_conditions: true,
        }
    }

    /// A fixture using a random prefix of a shared store.
    pub fn with_random_prefix(store: crate::store::DynObjectStore) -> Self {
        let prefix = ObjectKey::parse(&format!("conformance/{}", unique_name("t"))).unwrap();
        StoreFixture {
            store,
            prefix: Some(prefix),
            guard: None,
            signer_at: None,
            atomic_conditions: true,
        }
    }

    /// `rel` under the fixture's prefix.
    pub fn key(&self, rel: &str) -> ObjectKey {
        match &self.prefix {
            Some(p) => p.join(rel).unwrap(),
            None => ObjectKey::parse(rel).unwrap(),
        }
    }
}

/// Makes queue instances that share one namespace; opening fails as the
/// backend's open does (a refused clock check, say).
pub type QueueMaker = Box<
    dyn Fn(
            Arc<dyn Clock>,
            crate::queue::QueueOptions,
        )
            -> Pin<Box<dyn Future<Output = crate::Result<crate::queue::DynJobQueue>> + Send>>
        + Send
        + Sync,
>;

/// A queue namespace under test: every call of `make` opens the same queue
/// (as a restarted process would).
pub struct QueueFixture {
    pub make: QueueMaker,
    pub guard: Option<Box<dyn Any + Send>>,
}

/// Makes catalog instances on one namespace.
pub type CatalogMaker = Box<
    dyn Fn(Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = crate::catalog::DynCatalog> + Send>>
        + Send
        + Sync,
>;

/// A catalog namespace under test.
pub struct CatalogFixture {
    pub make: CatalogMaker,
    pub guard: Option<Box<dyn Any + Send>>,
}

/// Opens the database under test (migrated, stamping rows with the clock);
/// called again with the same clock, it opens the same database.
#[cfg(feature = "sql")]
pub type DatabaseMaker = Box<
    dyn Fn(Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = crate::sql::Database> + Send>>
        + Send
        + Sync,
>;

/// A database under test, for the repository suite.
#[cfg(feature = "sql")]
pub struct DbFixture {
    pub make: DatabaseMaker,
    pub guard: Option<Box<dyn Any + Send>>,
}

/// A bus under test; the suites use random topics.
pub struct BusFixture {
    pub bus: crate::bus::DynEventBus,
    /// A second handle on the same bus that shares as little as the
    /// backend allows (for Redis, other connections; for memory, a clone of
    /// the bus rather than the same `Arc`), to check delivery across
    /// handles.
    pub other: crate::bus::DynEventBus,
}

/// One instance of upload sessions under test.
pub struct UploadsInstance {
    pub uploads: crate::uploads::DynUploadSessions,
    /// The most bytes the instance buffered since the last reset (for the
    /// memory bound), and the reset.
    pub peak_buffered: Box<dyn Fn() -> u64 + Send + Sync>,
    pub reset_peak_buffered: Box<dyn Fn() + Send + Sync>,
}

impl UploadsInstance {
    pub fn peak(&self) -> u64 {
        (self.peak_buffered)()
    }

    pub fn reset_peak(&self) {
        (self.reset_peak_buffered)()
    }
}

/// Makes upload session instances on one state namespace and store.
pub type UploadsMaker = Box<
    dyn Fn(Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = UploadsInstance> + Send>> + Send + Sync,
>;

/// Upload sessions under test: every call of `make` opens another instance
/// on the same state and store (as another process would).
pub struct UploadsFixture {
    pub make: UploadsMaker,
    /// The store the objects land in.
    pub store: crate::store::DynObjectStore,
    /// Where the test's objects go (a random prefix on a shared store).
    pub prefix: Option<ObjectKey>,
    /// The staging prefix the instances were given.
    pub staging: ObjectKey,
    /// The part size the instances were given.
    pub part_size: usize,
    pub guard: Option<Box<dyn Any + Send>>,
}

impl UploadsFixture {
    /// `rel` under the fixture's prefix.
    pub fn key(&self, rel: &str) -> ObjectKey {
        match &self.prefix {
            Some(p) => p.join(rel).unwrap(),
            None => ObjectKey::parse(rel).unwrap(),
        }
    }
}

/// A key-value store under test; the suite uses random keys.
pub struct KvFixture {
    pub kv: crate::kv::DynKeyValue,
    /// A second handle on the same store (another connection or pool, as a
    /// second process would have; for in-process, the same store).
    pub other: crate::kv::DynKeyValue,
    /// The clock both handles follow, which the suite moves; `None` for a
    /// backend that follows its own clock (Redis), where the suite waits for
    /// expiry instead, with a bound.
    pub clock: Option<Arc<crate::ManualClock>>,
    pub guard: Option<Box<dyn Any + Send>>,
}

/// Expands to one `#[tokio::test]` per case of a suite.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($suite:ident, $make:expr, [$($case:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let make = $make;
                if let Some(fixture) = make().await {
                    $crate::conformance::$suite::$case(fixture).await;
                }
            }
        )*
    };
}

/// The object store suite: `store_suite!(|| async { Some(StoreFixture) })`.
#[macro_export]
macro_rules! store_suite {
    ($make:expr) => {
        $crate::__conformance_cases!(
            store,
            $make,
            [
                put_get_round_trip,
                missing_objects_are_not_found,
                ranges,
                streaming_put_and_get,
                failed_stream_keeps_the_old_object,
                readers_never_see_partial_writes,
                list_by_prefix_in_key_order,
                delete_is_idempotent,
                copy_replaces_the_target,
                multipart_upload,
                multipart_rejects_bad_parts,
                multipart_abort_leaves_nothing,
                keys_with_awkward_characters,
                create_only_and_compare_and_swap,
                concurrent_creates_have_one_winner,
                concurrent_compare_and_swaps_have_one_winner,
                content_type_and_cache_control_round_trip,
                if_none_match_is_not_modified,
                list_stream_starts_after_a_cursor,
                list_of_a_prefix_that_is_an_object,
                a_key_beside_its_own_prefix,
                delete_many_and_delete_prefix,
                a_cancelled_put_leaves_the_old_object,
                multipart_refuses_stale_misordered_and_reused,
                concurrent_resends_of_a_part_keep_one,
                presigned_urls_are_bound,
            ]
        );
    };
}

/// The job queue suite: `queue_suite!(|| async { Some(QueueFixture) })`.
#[macro_export]
macro_rules! queue_suite {
    ($make:expr) => {
        $crate::__conformance_cases!(
            queue,
            $make,
            [
                enqueue_reserve_ack,
                priority_then_age_order,
                run_after_waits,
                lease_expiry_redelivers,
                heartbeat_extends_the_lease,
                expired_or_stale_leases_are_conflicts,
                retry_with_backoff_then_dead_letter,
                requeue_dead_letters,
                dedupe_while_live,
                lost_leases_exhaust_attempts,
                jobs_survive_a_restart,
                concurrent_workers_never_share_a_job,
                bad_input_is_rejected,
                wall_clock_stepping_back_keeps_leases,
                acks_are_idempotent_within_retention,
                ack_after_the_lease_was_lost_is_a_conflict,
                requeue_refuses_while_another_job_holds_the_key,
                final_attempt_heartbeat_and_ack,
                a_retry_is_ranked_by_its_new_time,
                dead_letters_page_in_death_order,
                cancel_waiting_running_and_dead_jobs,
                reserve_by_kinds,
                clock_skew_is_checked_at_open,
            ]
        );
    };
}

/// The event bus suite: `bus_suite!(|| async { Some(BusFixture) })`.
#[macro_export]
macro_rules! bus_suite {
    ($make:expr) => {
        $crate::__conformance_cases!(
            bus,
            $make,
            [
                delivers_to_every_subscriber_in_order,
                batches_keep_their_order_and_are_refused_whole,
                topics_are_isolated,
                delivers_across_handles,
                dropped_subscriptions_are_fine,
                oversized_events_are_rejected,
                slow_subscribers_lag_without_blocking,
                payloads_of_exactly_the_limit_are_delivered,
            ]
        );
    };
}

/// The repository suite: `db_suite!(|| async { Some(DbFixture) })`.
#[macro_export]
macro_rules! db_suite {
    ($make:expr) => {
        $crate::__conformance_cases!(
            db,
            $make,
            [
                users_are_unique_without_regard_to_case,
                sessions_rotate_and_reuse_is_detected,
                transactions_commit_or_roll_back_whole,
                reads_see_a_snapshot_and_autocommit_sees_each_commit,
                channels_members_and_roles,
                channel_lists_page_by_cursor,
                permission_matrix_defaults_and_overrides,
                channel_updates_compare_and_set,
                invites_are_redeemed_at_most_max_uses,
                bans_remove_members_and_expire,
                messages_get_dense_sequence_numbers,
                messages_edit_delete_react_and_page,
                search_ranks_and_hides_what_the_viewer_may_not_see,
                search_pages_and_survives_hostile_queries,
                search_finds_old_matches_under_many_newer_videos,
                deleting_a_user_cascades,
                forged_cursors_are_invalid_input,
            ]
        );
    };
}

/// The catalog suite: `catalog_suite!(|| async { Some(CatalogFixture) })`.
#[macro_export]
macro_rules! catalog_suite {
    ($make:expr) => {
        $crate::__conformance_cases!(
            catalog,
            $make,
            [
                create_and_read_back,
                status_transitions,
                stale_fences_and_versions_change_nothing,
                illegal_transitions_change_nothing,
                concurrent_transitions_have_one_winner,
                list_filters_newest_first,
                source_metadata_round_trip,
                unknown_videos_are_not_found,
                duplicate_ids_and_bad_titles_are_rejected,
                survives_a_restart,
            ]
        );
    };
}

/// The upload sessions suite: `uploads_suite!(|| async { Some(UploadsFixture) })`.
#[macro_export]
macro_rules! uploads_suite {
    ($make:expr) => {
        $crate::__conformance_cases!(
            uploads,
            $make,
            [
                round_trip_at_every_chunk_size,
                wrong_offsets_are_conflicts,
                bytes_past_the_total_are_invalid,
                deferred_length,
                finish_needs_every_byte_and_is_idempotent,
                aborted_uploads_are_gone,
                expiry_removes_state_and_bytes,
                instances_continue_each_other,
                concurrent_appends_have_one_winner,
                stale_writers_are_fenced,
                failed_bodies_keep_what_arrived,
                cancelled_appends_free_the_upload,
                memory_stays_bounded,
                bad_input_is_rejected,
            ]
        );
    };
}

/// The key-value suite: `kv_suite!(|| async { Some(KvFixture) })`.
#[macro_export]
macro_rules! kv_suite {
    ($make:expr) => {
        $crate::__conformance_cases!(
            kv,
            $make,
            [
                put_get_overwrite,
                create_only_when_absent,
                if_version_compare_and_set,
                delete_with_and_without_version,
                cas_race_counts_every_increment,
                incr_is_atomic_across_handles,
                incr_ttl_is_set_once,
                counters_and_values_do_not_mix,
                values_expire,
                stale_version_after_expiry_and_recreate_fails,
                versions_grow_across_deletes,
                set_members_expire_individually,
                set_readd_refreshes,
                sweep_keeps_live_data,
                bad_input_is_rejected,
                display_names_the_backend,
            ]
        );
    };
}
