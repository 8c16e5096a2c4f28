//! The learning-path engine: rules are data (`config/learning-rules.json`), the engine is a
//! pure, deterministic function of its inputs, so a path can be explained and re-derived.
//!
//! Rule semantics, in order:
//! 1. A rule matches a skill when the student has a score for `skill` within
//!    `[min_score, max_score]` (both inclusive). Skills no rule mentions are stored but ignored.
//! 2. Matched rules are ordered weakest skill first (score ascending), then by skill code, then by
//!    their position in the file: the student starts where they need help most.
//! 3. Each matched rule contributes its `courses` (slugs) in order, skipping courses that are not
//!    published, already completed, or already in the path.
//! 4. An enrolled course points at its first unfinished module (`module_id`), so the step says
//!    where to continue rather than where to start.
//! 5. At most `max_steps` steps.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearningRules {
    pub version: u32,
    #[serde(default = "default_max_steps")]
    pub max_steps: usize,
    pub rules: Vec<Rule>,
}

fn default_max_steps() -> usize {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub skill: String,
    #[serde(default)]
    pub min_score: f64,
    #[serde(default = "hundred")]
    pub max_score: f64,
    /// Course slugs, in the order the student should take them.
    pub courses: Vec<String>,
    /// Placeholders: `{skill}`, `{score}`, `{course_title}`, `{course_level}`.
    pub reason: String,
}

fn hundred() -> f64 {
    100.0
}

impl LearningRules {
    /// The rules bundled into the binary, used when no file overrides them.
    pub fn bundled() -> LearningRules {
        Self::parse(include_str!("../../config/learning-rules.json")).expect("the bundled learning rules are valid")
    }

    pub fn parse(text: &str) -> Result<LearningRules, String> {
        let rules: LearningRules = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (i, r) in rules.rules.iter().enumerate() {
            if !is_skill_code(&r.skill) {
                return Err(format!("rules[{i}].skill {:?} is not a skill code ([a-z0-9_-]{{1,64}})", r.skill));
            }
            if !(0.0..=100.0).contains(&r.min_score)
                || !(0.0..=100.0).contains(&r.max_score)
                || r.min_score > r.max_score
            {
                return Err(format!("rules[{i}]: min_score and max_score must satisfy 0 <= min <= max <= 100"));
            }
            if r.courses.is_empty() {
                return Err(format!("rules[{i}].courses must not be empty"));
            }
        }
        Ok(rules)
    }

    pub fn load(path: &std::path::Path) -> Result<LearningRules, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// `[a-z0-9_-]{1,64}`: the only skill codes accepted from the tool and in rules.
pub fn is_skill_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A published course as the engine sees it.
#[derive(Debug, Clone)]
pub struct CatalogCourse {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub level: String,
}

/// Where an enrolled student continues: the first module with an unfinished lesson.
#[derive(Debug, Clone)]
pub struct ContinueAt {
    pub module_id: Uuid,
    pub module_title: String,
}

pub struct Inputs<'a> {
    pub skills: &'a BTreeMap<String, f64>,
    pub completed_courses: &'a HashSet<Uuid>,
    /// Enrolled, not completed courses → where to continue (None: no unfinished module known).
    pub enrolled: &'a HashMap<Uuid, Option<ContinueAt>>,
    pub catalog: &'a [CatalogCourse],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    /// 1-based.
    pub position: u32,
    pub course_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_id: Option<Uuid>,
    pub reason: String,
}

/// Renders a score the way a person writes it: 35, 35.5.
pub fn fmt_score(s: f64) -> String {
    if s.fract() == 0.0 { format!("{}", s as i64) } else { format!("{:.1}", s) }
}

pub fn recommend(rules: &LearningRules, input: &Inputs<'_>) -> Vec<Step> {
    let by_slug: HashMap<&str, &CatalogCourse> = input.catalog.iter().map(|c| (c.slug.as_str(), c)).collect();
    let mut matched: Vec<(f64, &str, usize, &Rule)> = rules
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let score = *input.skills.get(&r.skill)?;
            (r.min_score <= score && score <= r.max_score).then_some((score, r.skill.as_str(), i, r))
        })
        .collect();
    matched.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)).then(a.2.cmp(&b.2)));

    let mut steps: Vec<Step> = Vec::new();
    let mut seen: HashSet<Uuid> = HashSet::new();
    for (score, skill, _, rule) in matched {
        for slug in &rule.courses {
            if steps.len() >= rules.max_steps {
                return steps;
            }
            let Some(c) = by_slug.get(slug.as_str()) else { continue };
            if input.completed_courses.contains(&c.id) || !seen.insert(c.id) {
                continue;
            }
            let mut reason = rule
                .reason
                .replace("{skill}", skill)
                .replace("{score}", &fmt_score(score))
                .replace("{course_title}", &c.title)
                .replace("{course_level}", &c.level);
            let module_id = match input.enrolled.get(&c.id) {
                Some(Some(at)) => {
                    reason.push_str(&format!(" You are already enrolled: continue with “{}”.", at.module_title));
                    Some(at.module_id)
                }
                _ => None,
            };
            steps.push(Step { position: steps.len() as u32 + 1, course_id: c.id, module_id, reason });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> LearningRules {
        LearningRules::parse(
            r#"{"version": 1, "max_steps": 3, "rules": [
                {"skill": "python", "max_score": 49, "courses": ["py-1", "py-2"],
                 "reason": "Your {skill} score was {score}/100, so we start with the {course_level} course “{course_title}”."},
                {"skill": "python", "min_score": 50, "courses": ["py-2"], "reason": "{skill} {score}: “{course_title}”."},
                {"skill": "sql", "max_score": 60, "courses": ["sql-1", "py-2"], "reason": "{skill} {score}: “{course_title}”."}
            ]}"#,
        )
        .unwrap()
    }

    fn catalog() -> Vec<CatalogCourse> {
        ["py-1", "py-2", "sql-1"]
            .iter()
            .enumerate()
            .map(|(i, s)| CatalogCourse {
                id: Uuid::from_u128(i as u128 + 1),
                slug: s.to_string(),
                title: format!("Course {s}"),
                level: if i == 1 { "intermediate".into() } else { "beginner".into() },
            })
            .collect()
    }

    fn run(skills: &[(&str, f64)], completed: &[u128], enrolled: &[(u128, Option<ContinueAt>)]) -> Vec<Step> {
        let skills: BTreeMap<String, f64> = skills.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let completed: HashSet<Uuid> = completed.iter().map(|i| Uuid::from_u128(*i)).collect();
        let enrolled: HashMap<Uuid, Option<ContinueAt>> =
            enrolled.iter().map(|(i, c)| (Uuid::from_u128(*i), c.clone())).collect();
        let cat = catalog();
        recommend(
            &rules(),
            &Inputs { skills: &skills, completed_courses: &completed, enrolled: &enrolled, catalog: &cat },
        )
    }

    #[test]
    fn weakest_skill_first_with_explained_reasons() {
        let steps = run(&[("python", 35.0), ("sql", 20.5)], &[], &[]);
        let ids: Vec<u128> = steps.iter().map(|s| s.course_id.as_u128()).collect();
        // sql (20.5) before python (35); py-2 is only listed once.
        assert_eq!(ids, vec![3, 2, 1]);
        assert_eq!(steps[0].reason, "sql 20.5: “Course sql-1”.");
        assert_eq!(
            steps[2].reason,
            "Your python score was 35/100, so we start with the beginner course “Course py-1”."
        );
        assert_eq!(steps.iter().map(|s| s.position).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn completed_courses_are_skipped_and_enrolled_ones_continue() {
        let m = ContinueAt { module_id: Uuid::from_u128(99), module_title: "Loops".into() };
        let steps = run(&[("python", 10.0)], &[1], &[(2, Some(m))]);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].course_id, Uuid::from_u128(2));
        assert_eq!(steps[0].module_id, Some(Uuid::from_u128(99)));
        assert!(steps[0].reason.ends_with("continue with “Loops”."), "{}", steps[0].reason);
    }

    #[test]
    fn unknown_skills_and_unpublished_courses_are_ignored() {
        assert!(run(&[("rust", 0.0)], &[], &[]).is_empty());
        let skills: BTreeMap<String, f64> = [("python".to_string(), 10.0)].into();
        let steps = recommend(
            &rules(),
            &Inputs { skills: &skills, completed_courses: &HashSet::new(), enrolled: &HashMap::new(), catalog: &[] },
        );
        assert!(steps.is_empty());
    }

    #[test]
    fn bands_are_inclusive_and_output_is_deterministic() {
        assert_eq!(run(&[("python", 49.0)], &[], &[]).len(), 2);
        assert_eq!(run(&[("python", 50.0)], &[], &[]).len(), 1);
        let a = run(&[("python", 1.0), ("sql", 1.0)], &[], &[]);
        let b = run(&[("sql", 1.0), ("python", 1.0)], &[], &[]);
        assert_eq!(a, b);
        // Ties broken by skill code: python before sql; capped at max_steps.
        assert_eq!(a.iter().map(|s| s.course_id.as_u128()).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(LearningRules::parse(r#"{"version":1,"rules":[{"skill":"Py","courses":["a"],"reason":""}]}"#).is_err());
        assert!(
            LearningRules::parse(
                r#"{"version":1,"rules":[{"skill":"py","min_score":60,"max_score":50,"courses":["a"],"reason":""}]}"#
            )
            .is_err()
        );
        assert!(LearningRules::parse(r#"{"version":1,"rules":[],"extra":1}"#).is_err());
        LearningRules::bundled();
    }

    #[test]
    fn skill_codes() {
        assert!(is_skill_code("python_3-x"));
        assert!(!is_skill_code(""));
        assert!(!is_skill_code("Python"));
        assert!(!is_skill_code(&"a".repeat(65)));
        assert_eq!(fmt_score(35.0), "35");
        assert_eq!(fmt_score(35.25), "35.2");
    }
}
