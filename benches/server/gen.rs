//! A seeded generator of a video catalog that reads like a real one: titles
//! from templates over topic words, tags, and descriptions mixing common
//! words with a long tail of rarer ones. Word choice follows a Zipf-like
//! law (rank r drawn with probability about 1/r), so a few words are in most
//! videos and most words in few, as in real text.
//!
//! Every video is a pure function of (seed, index), so seeding can run in
//! parallel chunks and the expected match counts can be recomputed.

use videosync::core::db::Visibility;

/// SplitMix64: small, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The generator of item `index` of stream `seed`.
    pub(crate) fn for_item(seed: u64, index: u64) -> Self {
        let mut r = Rng(seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
        r.next();
        r
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A rank in `0..n`, rank r with probability about 1/(r+1).
    pub(crate) fn zipf(&mut self, n: usize) -> usize {
        let r = (n as f64).powf(self.unit()) as usize;
        r.saturating_sub(1).min(n - 1)
    }

    pub(crate) fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }

    pub(crate) fn zipf_pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.zipf(words.len())]
    }
}

/// Topic words, most frequent first.
#[rustfmt::skip]
const TOPICS: &[&str] = &[
    "music", "live", "travel", "cooking", "guitar", "game", "review", "tutorial", "city", "night",
    "football", "piano", "recipe", "camera", "drone", "beach", "mountain", "science", "history",
    "workout", "lesson", "cover", "vlog", "concert", "coffee", "bread", "garden", "cat", "dog",
    "space", "rocket", "car", "bike", "hiking", "ocean", "sunset", "jazz", "drums", "dance",
    "painting", "drawing", "animation", "film", "trailer", "comedy", "podcast", "interview",
    "news", "weather", "storm", "engine", "repair", "climbing", "skiing", "snow", "winter",
    "summer", "festival", "lecture", "math", "physics", "chemistry", "experiment", "yoga",
    "morning", "routine", "speedrun", "minecraft", "house", "plants", "puppy", "training",
    "documentary", "episode", "lens", "unboxing", "programming", "rust", "database", "server",
    "keyboard", "synth", "violin", "choir", "opera", "ballet", "skateboard", "surfing", "fishing",
    "camping", "forest", "river", "lake", "desert", "volcano", "island", "train", "subway",
    "airport", "market", "street", "food", "pasta", "sushi", "noodles", "cookies", "cookware",
    "baking", "knitting", "woodworking", "pottery", "photography", "timelapse", "wildlife",
    "birds", "whales", "astronomy", "telescope", "chess", "poker", "puzzle", "magic",
];

#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "beginner", "advanced", "quick", "easy", "ultimate", "complete", "full", "best", "first",
    "new", "old", "epic", "relaxing", "slow", "simple", "homemade", "classic", "rainy", "late",
    "early", "tiny", "huge", "hidden", "honest", "unusual", "perfect", "lazy", "cozy", "wild",
];

#[rustfmt::skip]
const KINDS: &[&str] = &[
    "tutorial", "review", "vlog", "highlights", "compilation", "livestream", "guide", "lesson",
    "walkthrough", "session", "story", "tour", "challenge", "explained", "reaction",
];

#[rustfmt::skip]
const PLACES: &[&str] = &[
    "tokyo", "paris", "lisbon", "berlin", "iceland", "kyoto", "patagonia", "norway", "morocco",
    "peru", "seoul", "istanbul", "mexico", "vietnam", "scotland", "alaska", "sicily", "nepal",
    "chile", "cairo", "oslo", "prague", "vienna", "naples", "bali", "quebec", "dublin",
];

#[rustfmt::skip]
const VERBS: &[&str] = &[
    "play", "make", "fix", "cook", "build", "learn", "paint", "film", "train", "clean", "bake",
    "grow", "draw", "edit", "record", "tune", "plan", "pack", "brew", "sharpen",
];

const OPENERS: &[&str] = &[
    "in this video we",
    "today i",
    "this week we",
    "join me as i",
    "a short look at how we",
    "here is how i",
    "we finally",
];

#[rustfmt::skip]
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ren", "tu", "sa", "vo", "el", "dar", "ni", "qu", "bra", "zel", "fo", "ga",
    "pi", "ru", "sen", "tha", "wi", "xo", "yam", "ko", "le", "mor", "na", "ost", "pel", "ri", "su",
];

/// The long tail: made-up words, the first far more frequent than the last.
const LONG_TAIL: usize = 20_000;

fn tail_word(rank: usize) -> String {
    // Two to four syllables, chosen by the rank's digits in base 30.
    let mut n = rank + 31;
    let mut w = String::new();
    while n > 0 {
        w.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    w
}

/// The word the rare query looks for: planted in one video in 10 000.
pub(crate) const RARE_WORD: &str = "axolotl";
const RARE_EVERY: usize = 10_000;

/// One generated video (its channel is chosen by the caller).
#[derive(Debug, Clone)]
pub(crate) struct GenVideo {
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) tags: Vec<String>,
    /// Its own visibility (`None` follows the channel).
    pub(crate) visibility: Option<Visibility>,
    pub(crate) channel: usize,
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Video `index` of the catalog made from `seed`, in one of `channels`.
pub(crate) fn video(seed: u64, index: usize, channels: usize) -> GenVideo {
    let mut r = Rng::for_item(seed, index as u64);
    let t1 = r.zipf_pick(TOPICS);
    let t2 = r.zipf_pick(TOPICS);
    let adj = r.pick(ADJECTIVES);
    let kind = r.zipf_pick(KINDS);
    let place = r.zipf_pick(PLACES);
    let title = match r.below(6) {
        0 => format!("{} {t1} {t2}", capitalized(adj)),
        1 => format!("{} {t2} part {}", capitalized(t1), 1 + r.below(30)),
        2 => format!("How to {} {t1} like a pro", r.pick(VERBS)),
        3 => format!("{} in {}", capitalized(t1), capitalized(place)),
        4 => format!("{} {t1} {kind}", capitalized(adj)),
        _ => format!("{} {kind}: {t2} and {t1}", capitalized(t1)),
    };
    let mut tags: Vec<String> = Vec::new();
    let n_tags = 2 + r.below(5);
    for _ in 0..n_tags {
        let tag = match r.below(4) {
            0 => r.zipf_pick(KINDS).to_owned(),
            1 => r.zipf_pick(PLACES).to_owned(),
            _ => r.zipf_pick(TOPICS).to_owned(),
        };
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let mut description = String::new();
    for s in 0..(1 + r.below(3)) {
        if s > 0 {
            description.push(' ');
        }
        description.push_str(&capitalized(r.pick(OPENERS)));
        description.push_str(&format!(
            " {} {} {}",
            r.pick(VERBS),
            r.pick(ADJECTIVES),
            r.zipf_pick(TOPICS)
        ));
        for _ in 0..(3 + r.below(10)) {
            description.push(' ');
            match r.below(3) {
                0 => description.push_str(r.zipf_pick(TOPICS)),
                _ => description.push_str(&tail_word(r.zipf(LONG_TAIL))),
            }
        }
        description.push('.');
    }
    if index % RARE_EVERY == 7 {
        description.push_str(&format!(" Featuring an {RARE_WORD}."));
    }
    if r.unit() < 0.6 {
        description.push_str(" Thanks for watching!");
    }
    let visibility = match r.below(20) {
        0 => Some(Visibility::Private),
        1 => Some(Visibility::Unlisted),
        _ => None,
    };
    GenVideo {
        title,
        description,
        tags,
        visibility,
        channel: r.below(channels),
    }
}

/// The visibility of channel `i`: 70 % public, 15 % unlisted, 15 % private.
pub(crate) fn channel_visibility(i: usize) -> Visibility {
    match i % 20 {
        0..=2 => Visibility::Private,
        3..=5 => Visibility::Unlisted,
        _ => Visibility::Public,
    }
}

/// The name of channel `i`.
pub(crate) fn channel_name(seed: u64, i: usize) -> String {
    let mut r = Rng::for_item(seed ^ 0xC4A7, i as u64);
    format!(
        "{} {} {}",
        capitalized(r.pick(ADJECTIVES)),
        r.zipf_pick(TOPICS),
        r.pick(KINDS)
    )
}

/// Whether every word of `query` (as the search splits it) is a prefix of
/// some word of the video's title, tags or description.
pub(crate) fn matches(v: &GenVideo, query: &str) -> bool {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let mut text = words(&v.title);
    text.extend(words(&v.description));
    for t in &v.tags {
        text.extend(words(t));
    }
    words(query)
        .iter()
        .all(|q| text.iter().any(|w| w.starts_with(q.as_str())))
}
