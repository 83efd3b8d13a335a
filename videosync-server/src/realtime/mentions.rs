//! Who a chat message mentions: `@` followed by a member's name.

use std::collections::HashMap;

use videosync_sync::protocol::{MAX_MENTIONS, MAX_NAME_CHARS};
use videosync_sync::state::MemberId;

/// How many `@`s of one message are read.
const MAX_AT_SIGNS: usize = 4 * MAX_MENTIONS;

/// The members `text` mentions, in id order, at most [`MAX_MENTIONS`].
///
/// A mention is `@` at the start of the text or after a character that is
/// not a letter or digit, then a member's name, compared without case, then
/// the end of the text or a character that is not a letter or digit. Names
/// may hold spaces: the longest name that matches wins, so with members
/// "Ann" and "Ann Lee", `@ann lee` mentions "Ann Lee" only. Members who
/// share a name are all mentioned. The work is bounded whatever the input:
/// at most [`MAX_NAME_CHARS`] hash lookups for each of the first 128 `@`s,
/// and none once [`MAX_MENTIONS`] members are found.
pub fn mentions<'a>(
    text: &str,
    members: impl IntoIterator<Item = (MemberId, &'a str)>,
) -> Vec<MemberId> {
    if !text.contains('@') {
        return Vec::new();
    }
    let mut by_name: HashMap<String, Vec<MemberId>> = HashMap::new();
    for (id, name) in members {
        by_name.entry(name.to_lowercase()).or_default().push(id);
    }
    let chars: Vec<char> = text.chars().collect();
    let word = |c: char| c.is_alphanumeric();
    let mut found: Vec<MemberId> = Vec::new();
    let mut tried = 0;
    for at in 0..chars.len() {
        if chars[at] != '@' || (at > 0 && word(chars[at - 1])) {
            continue;
        }
        tried += 1;
        if tried > MAX_AT_SIGNS {
            break;
        }
        // Candidates end where a word ends; the longest known name wins.
        let rest = &chars[at + 1..chars.len().min(at + 1 + MAX_NAME_CHARS)];
        let mut candidate = String::new();
        let mut best: Option<&Vec<MemberId>> = None;
        for (i, c) in rest.iter().enumerate() {
            candidate.extend(c.to_lowercase());
            let ends_word = chars.get(at + 2 + i).is_none_or(|n| !word(*n));
            if ends_word {
                if let Some(ids) = by_name.get(&candidate) {
                    best = Some(ids);
                }
            }
        }
        if let Some(ids) = best {
            found.extend(ids);
            found.sort_unstable();
            found.dedup();
            if found.len() >= MAX_MENTIONS {
                found.truncate(MAX_MENTIONS);
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<(MemberId, &'static str)> {
        vec![
            (MemberId(1), "Ann"),
            (MemberId(2), "Ann Lee"),
            (MemberId(3), "bob"),
            (MemberId(4), "Zoë"),
            (MemberId(5), "bob"),
            (MemberId(6), "Ada."),
        ]
    }

    fn ids(v: &[u64]) -> Vec<MemberId> {
        v.iter().map(|i| MemberId(*i)).collect()
    }

    #[test]
    fn a_name_after_an_at_sign_is_a_mention() {
        assert_eq!(mentions("@Ann look", names()), ids(&[1]));
        assert_eq!(mentions("hey @ann!", names()), ids(&[1]));
        assert_eq!(mentions("@ZOË", names()), ids(&[4]));
        assert_eq!(mentions("(@bob)", names()), ids(&[3, 5]), "both bobs");
    }

    #[test]
    fn the_longest_name_wins() {
        assert_eq!(mentions("@ann lee, look", names()), ids(&[2]));
        assert_eq!(mentions("@ann leeway", names()), ids(&[1]));
        assert_eq!(mentions("@Ann and @Ann Lee", names()), ids(&[1, 2]));
    }

    #[test]
    fn no_mention_inside_a_word_or_an_address() {
        assert!(mentions("mail ann@bob.org", names()).is_empty());
        assert!(mentions("@annie", names()).is_empty());
        assert!(mentions("@ nobody", names()).is_empty());
        assert!(mentions("no at sign", names()).is_empty());
        assert!(mentions("@", names()).is_empty());
        // A name may end in punctuation.
        assert_eq!(mentions("@ada. hi", names()), ids(&[6]));
        assert_eq!(mentions("@bob.", names()), ids(&[3, 5]));
    }

    #[test]
    fn mentions_are_bounded() {
        let many: Vec<(MemberId, String)> =
            (0..100).map(|i| (MemberId(i), format!("m{i}"))).collect();
        let text: String = (0..100).map(|i| format!("@m{i} ")).collect();
        let got = mentions(&text, many.iter().map(|(id, n)| (*id, n.as_str())));
        assert_eq!(got.len(), MAX_MENTIONS);
        let hostile = "@".repeat(2000);
        assert!(mentions(&hostile, names()).is_empty());
    }
}
