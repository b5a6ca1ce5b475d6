//! Templated English captions: the objects of an image in random order and
//! one of several wordings ("a fork and a knife next to a cup.", "there are
//! two dogs."), with articles, number words and plurals right, and the byte
//! span of every object word recorded so tests and token alignment can find
//! them. Filler words are chosen so that none is an entity of reward-core's
//! vocabulary (checked in `tests/world_captions.rs`).

use serde::Serialize;

use super::World;
use super::rng::Stream;
use super::scene::ClassId;

/// One object named in a caption.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mention {
    /// The class named.
    pub class: ClassId,
    /// Byte range of the object word(s) in the caption ("knives" in "two knives").
    pub span: (usize, usize),
    /// How many the caption says there are.
    pub count: u32,
    /// True when the class is not in the image (annotator bias).
    pub hallucinated: bool,
}

/// One entry of the caption's object list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item {
    pub class: ClassId,
    pub count: u32,
    pub hallucinated: bool,
}

/// Spelled-out counts; world files cap `max_per_class` at 10.
const NUMBERS: [&str; 11] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];

/// Irregular plurals among COCO/LVIS-style object names (last word only).
const IRREGULAR: &[(&str, &str)] = &[
    ("person", "people"),
    ("man", "men"),
    ("woman", "women"),
    ("child", "children"),
    ("mouse", "mice"),
    ("knife", "knives"),
    ("leaf", "leaves"),
    ("shelf", "shelves"),
    ("loaf", "loaves"),
    ("wolf", "wolves"),
    ("calf", "calves"),
    ("foot", "feet"),
    ("tooth", "teeth"),
    ("goose", "geese"),
    ("sheep", "sheep"),
    ("deer", "deer"),
    ("fish", "fish"),
    ("skis", "skis"),
    ("scissors", "scissors"),
    ("glasses", "glasses"),
    ("potato", "potatoes"),
    ("tomato", "tomatoes"),
];

/// English plural of an object name; multi-word names inflect the last word
/// ("wine glass" -> "wine glasses", "hair drier" -> "hair driers").
pub fn pluralise(name: &str) -> String {
    let (head, last) = match name.rfind(' ') {
        Some(i) => name.split_at(i + 1),
        None => ("", name),
    };
    if let Some((_, plural)) = IRREGULAR.iter().find(|(s, _)| *s == last) {
        return format!("{head}{plural}");
    }
    let ends = |suffix: &str| last.ends_with(suffix);
    let plural = if ["s", "x", "z", "ch", "sh"].iter().any(|s| ends(s)) {
        format!("{last}es")
    } else if ends("y") && !last[..last.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']) {
        format!("{}ies", &last[..last.len() - 1])
    } else {
        format!("{last}s")
    };
    format!("{head}{plural}")
}

/// "a" or "an" by the sound of the first letter, with the usual exceptions
/// ("a unicycle", "an hour").
pub fn article(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    if ["uni", "use", "eu", "one", "uri"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return "a";
    }
    if ["hour", "honest", "heir"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return "an";
    }
    match lower.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// Accumulates caption text and the spans of object words.
struct Builder<'w> {
    world: &'w World,
    text: String,
    mentions: Vec<Mention>,
}

impl Builder<'_> {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// "a fork", "an apple", "two knives".
    fn phrase(&mut self, item: Item) {
        let class = &self.world.classes()[item.class.0 as usize];
        let noun = if item.count == 1 {
            self.push(article(&class.name));
            class.name.as_str()
        } else {
            self.push(NUMBERS[item.count.min(10) as usize]);
            class.plural.as_str()
        };
        self.push(" ");
        let start = self.text.len();
        self.push(noun);
        self.mentions.push(Mention {
            class: item.class,
            span: (start, self.text.len()),
            count: item.count,
            hallucinated: item.hallucinated,
        });
    }

    /// "a", "a and b", "a, b and c".
    fn list(&mut self, items: &[Item]) {
        for (i, &item) in items.iter().enumerate() {
            if i > 0 {
                self.push(if i + 1 == items.len() { " and " } else { ", " });
            }
            self.phrase(item);
        }
    }
}

/// Writes a caption naming `items` (in the given order) with a random
/// wording; `items` must not be empty.
pub(crate) fn write_caption(
    world: &World,
    items: &[Item],
    rng: &mut Stream,
) -> (String, Vec<Mention>) {
    let mut b = Builder {
        world,
        text: String::new(),
        mentions: Vec::with_capacity(items.len()),
    };
    // Templates 0-4 take the whole list; 5-8 split it in two groups.
    let templates = if items.len() >= 2 { 9 } else { 5 };
    let split = if items.len() >= 2 {
        1 + rng.below(items.len() - 1)
    } else {
        0
    };
    let (first, rest) = items.split_at(split);
    match rng.below(templates) {
        0 => b.list(items),
        1 => {
            b.push(if items[0].count > 1 {
                "there are "
            } else {
                "there is "
            });
            b.list(items);
        }
        2 => {
            b.push("we can see ");
            b.list(items);
        }
        3 => {
            b.push("this shows ");
            b.list(items);
        }
        4 => {
            b.list(items);
            b.push(" can be seen");
        }
        t => {
            b.list(first);
            b.push([" next to ", " beside ", " with ", ", together with "][t - 5]);
            b.list(rest);
        }
    }
    b.push(".");
    (b.text, b.mentions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        for (s, p) in [
            ("fork", "forks"),
            ("knife", "knives"),
            ("bus", "buses"),
            ("person", "people"),
            ("mouse", "mice"),
            ("wine glass", "wine glasses"),
            ("sandwich", "sandwiches"),
            ("teddy bear", "teddy bears"),
            ("pony", "ponies"),
            ("toy", "toys"),
            ("skis", "skis"),
            ("box", "boxes"),
        ] {
            assert_eq!(pluralise(s), p, "{s}");
        }
    }

    #[test]
    fn articles() {
        assert_eq!(article("apple"), "an");
        assert_eq!(article("umbrella"), "an");
        assert_eq!(article("unicycle"), "a");
        assert_eq!(article("fork"), "a");
        assert_eq!(article("hour glass"), "an");
    }
}
