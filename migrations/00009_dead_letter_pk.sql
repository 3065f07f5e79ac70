-- The pk of a dead letter that is about one pk (a pk failure of the
-- fetcher or the suspicion checker), so 'mockstagram dlq list' shows it and
-- '--pk' finds a pk's letters with an index. NULL for a poisoned message
-- (a task or result of many pks). Letters archived before are filled in
-- from their payload where it is a pk failure's JSON ({"pk": N, ...});
-- a payload that is not JSON keeps NULL.

-- +goose Up
ALTER TABLE dead_letters ADD COLUMN pk bigint CHECK (pk > 0);

CREATE INDEX dead_letters_pk_received_idx ON dead_letters (pk, received_at, id) WHERE pk IS NOT NULL;

-- +goose StatementBegin
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT id, payload FROM dead_letters LOOP
        BEGIN
            UPDATE dead_letters
            SET pk = (SELECT NULLIF(greatest((j ->> 'pk')::bigint, 0), 0)
                      FROM (SELECT convert_from(r.payload, 'UTF8')::jsonb AS j) AS p
                      WHERE jsonb_typeof(j) = 'object' AND j ? 'minute')
            WHERE id = r.id;
        EXCEPTION WHEN others THEN
            NULL; -- not a pk failure's JSON: no pk
        END;
    END LOOP;
END $$;
-- +goose StatementEnd
