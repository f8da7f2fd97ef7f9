//! How many labels of the target a walk step shows a zone's servers (QNAME minimisation,
//! RFC 9156).
//!
//! A step asks the servers of zone Z about the target cut to some number of labels. Where
//! the resolver knows the zone cuts below Z (a PIRCFG child list it holds for Z) it asks
//! straight for the next cut or the target itself, which is what Z has to see anyway.
//! Otherwise it adds labels as RFC 9156 section 2.3 allows: the first `minimise_one_label`
//! questions of a walk add one label each, and no walk asks more than
//! `max_minimise_count` questions (section 2.3's MINIMISE_ONE_LAB, "a good value is 4",
//! and MAX_MINIMISE_COUNT, "a RECOMMENDED value is 10"). When more labels are left than
//! questions, the extra labels go to the last questions, so the steps that show more
//! than one label at once are the deepest ones: in the e164 tree, inside the block whose
//! DP holds the number and has to see all of it, not at the country DP above it.

/// Counts the minimised questions of one walk and picks how many labels each shows.
#[derive(Debug, Clone)]
pub struct Minimiser {
    max_questions: u32,
    one_label: u32,
    asked: u32,
}

impl Minimiser {
    /// `max_questions` is MAX_MINIMISE_COUNT (at least 1), `one_label` MINIMISE_ONE_LAB.
    pub fn new(max_questions: u32, one_label: u32) -> Minimiser {
        Minimiser {
            max_questions: max_questions.max(1),
            one_label,
            asked: 0,
        }
    }

    /// Questions counted so far.
    pub fn asked(&self) -> u32 {
        self.asked
    }

    /// The labels of the next question, when `known` labels of a `target`-label name
    /// are known to lie in the zone being asked (`known < target`), with no knowledge of
    /// cuts below; counts the question.
    pub fn next(&mut self, known: usize, target: usize) -> usize {
        let left = target.saturating_sub(known).max(1);
        let asked = self.asked;
        self.asked = self.asked.saturating_add(1);
        let add = if asked < self.one_label {
            1
        } else if asked.saturating_add(1) >= self.max_questions {
            // The last question the budget allows: the whole target.
            left
        } else {
            // Spread what is left over the questions left, smallest steps first.
            let questions_left = usize::try_from(self.max_questions - asked).unwrap_or(1);
            (left / questions_left).max(1)
        };
        known + add.min(left)
    }

    /// Counts a question whose labels came from knowledge of the cuts (no minimisation
    /// choice was made, but it is still a question of the walk).
    pub fn count_known(&mut self) {
        self.asked = self.asked.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label counts a walk asks, when no step finds a cut (every answer NODATA).
    fn plan(max: u32, one: u32, known: usize, target: usize) -> Vec<usize> {
        let mut m = Minimiser::new(max, one);
        let mut known = known;
        let mut out = Vec::new();
        while known < target {
            known = m.next(known, target);
            out.push(known);
        }
        out
    }

    #[test]
    fn short_walks_add_one_label_at_a_time() {
        // A carrier block (4 labels below the apex) to a number 7 labels further.
        assert_eq!(plan(10, 4, 6, 13), [7, 8, 9, 10, 11, 12, 13]);
        assert_eq!(plan(10, 4, 2, 12), (3..=12).collect::<Vec<_>>());
    }

    #[test]
    fn long_walks_stay_within_max_minimise_count_with_the_longer_steps_last() {
        // mimi.arpa. (2 labels) to a +1 555 111 2222 owner name (14 labels): 12 labels in
        // 10 questions, the two 2-label steps last.
        assert_eq!(plan(10, 4, 2, 14), [3, 4, 5, 6, 7, 8, 9, 10, 12, 14]);
        // 15 digits: 17 labels in 10 questions.
        let p = plan(10, 4, 2, 19);
        assert_eq!(p.len(), 10);
        assert_eq!(&p[..4], [3, 4, 5, 6]);
        assert_eq!(*p.last().unwrap(), 19);
        let steps: Vec<usize> = [2]
            .iter()
            .chain(&p)
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect();
        assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
        // A budget of 1: the whole name at once.
        assert_eq!(plan(1, 0, 2, 14), [14]);
        // No one-label steps: spread from the start.
        assert_eq!(plan(3, 0, 0, 9), [3, 6, 9]);
    }
}
