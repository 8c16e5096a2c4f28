-- EXPLAIN (ANALYZE, BUFFERS) of the hot queries (their joins, filters and indexes; the upsert's SET list shortened), against a database
-- seeded with tests/api/support/large_db.sql (student 1, a lesson of their course s % 10):
--     psql -d <db> -f bench/explain.sql
-- The writes run in a transaction that is rolled back. Keep in step with src/progress/store.rs,
-- src/progress/read.rs, src/dashboard.rs and src/achievements/evaluate.rs.
\set s '''00000001-0000-7000-8000-000000000001'''
\set c '''00000003-0000-7000-8000-000000000001'''
\set l '''00000005-0000-7000-8000-000000000014'''
\pset pager off
\echo === dashboard: outline of the first 100 enrollments
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT e.id AS enrollment_id, e.course_id, e.enrolled_at, e.completed_at, c.title, m.id AS module_id, l.id AS lesson_id,
       CASE WHEN lp.status = 'completed' THEN 1 ELSE 0 END AS done
FROM enrollments e LEFT JOIN courses c ON c.id = e.course_id
LEFT JOIN modules m ON m.course_id = e.course_id LEFT JOIN lessons l ON l.module_id = m.id
LEFT JOIN lesson_progress lp ON lp.lesson_id = l.id AND lp.user_id = :s
WHERE e.id IN (SELECT id FROM enrollments WHERE user_id = :s ORDER BY id LIMIT 101)
ORDER BY e.id, m.position, l.position;
\echo === dashboard: streak hours
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT hour FROM activity_hours WHERE user_id = :s AND hour >= (extract(epoch FROM now())::bigint / 3600 - 402 * 24);
\echo === dashboard: path and unread
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT lp.user_id, lp.generated_at, lp.based_on_assessment_id, lp.steps,
       (SELECT COUNT(*) FROM notifications n WHERE n.user_id = :s AND n.read_at IS NULL) AS unread_notifications
FROM (SELECT 1 AS one) AS me LEFT JOIN learning_paths lp ON lp.user_id = :s;
\echo === dashboard: recent awards
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT ua.*, a.* FROM user_achievements ua JOIN achievements a ON ua.achievement_id = a.id
WHERE ua.user_id = :s ORDER BY ua.id DESC LIMIT 6;
\echo === every request: the session check
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT * FROM sessions s LEFT JOIN users u ON s.user_id = u.id WHERE s.id = '00000000-0000-7000-8000-000000000001';
BEGIN;
\echo === progress PUT: the target, locked
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT l.id AS lesson_id, l.course_id AS course_id,
       CASE WHEN u.is_active AND u.role = 'instructor' THEN c.instructor_id END AS instructor_id,
       CASE WHEN EXISTS (SELECT 1 FROM activity_hours a WHERE a.user_id = :s AND a.hour = 493000) THEN 1 ELSE 0 END,
       CASE WHEN EXISTS (SELECT 1 FROM activity_hours a WHERE a.user_id = :s AND a.hour >= 492984 AND a.hour <= 493000) THEN 1 ELSE 0 END
FROM lessons l JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = :s
JOIN courses c ON c.id = l.course_id LEFT JOIN users u ON u.id = c.instructor_id
WHERE l.id = :l FOR UPDATE OF e;
\echo === progress PUT: the upsert
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
INSERT INTO lesson_progress (id, user_id, lesson_id, course_id, status, progress, time_spent_seconds, score, completed_at, created_at, updated_at)
SELECT gen_random_uuid(), :s, :l, :c, 'in_progress', 0.5, 30, NULL, NULL, now(), now()
WHERE EXISTS (SELECT 1 FROM lessons WHERE id = :l)
ON CONFLICT (user_id, lesson_id) DO UPDATE SET progress = GREATEST(lesson_progress.progress, excluded.progress), updated_at = excluded.updated_at
RETURNING *;
\echo === progress PUT: the rollup
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT (SELECT COUNT(*) FROM lessons WHERE course_id = :c) AS total_lessons,
       (SELECT COUNT(*) FROM lesson_progress WHERE user_id = :s AND course_id = :c AND status = 'completed') AS completed_lessons,
       (SELECT completed_at FROM enrollments WHERE user_id = :s AND course_id = :c) AS completed_at;
\echo === completing a lesson: the three counts
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT (SELECT COUNT(*) FROM lesson_progress WHERE user_id = :s AND status = 'completed') AS lessons,
       (SELECT COUNT(*) FROM enrollments WHERE user_id = :s AND completed_at IS NOT NULL) AS courses,
       (SELECT COUNT(*) FROM modules m WHERE m.course_id IN (SELECT course_id FROM lesson_progress WHERE user_id = :s AND status = 'completed')
          AND EXISTS (SELECT 1 FROM lessons l WHERE l.module_id = m.id)
          AND NOT EXISTS (SELECT 1 FROM lessons l WHERE l.module_id = m.id AND NOT EXISTS
              (SELECT 1 FROM lesson_progress lp WHERE lp.lesson_id = l.id AND lp.user_id = :s AND lp.status = 'completed'))) AS modules;
ROLLBACK;
