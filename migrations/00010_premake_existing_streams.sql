-- Streams made before this release got last, this and next month only; give every
-- stream its whole premake window now (new streams get it at creation, and a
-- starting worker premakes too), so headroom is full from the first health check.
SELECT sluice.premake_partitions(name) FROM sluice.streams ORDER BY name;
