package cli_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

// TestRegistryProgress: a change of more than one batch reports its
// progress on stderr, a batch at a time; a small one prints only its result.
func TestRegistryProgress(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)

	r := run(t, "registry", "add", "--range", "2000000-2024999", "--pk", "7", "--database-url", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "added 25001, 25001 influencers now tracked\n", r.stdout)
	assert.Equal(t, ""+
		"registry add: 10000/25001 pks (39%), 10000 changed\n"+
		"registry add: 20000/25001 pks (79%), 20000 changed\n"+
		"registry add: 25000/25001 pks (99%), 25000 changed\n"+
		"registry add: 25001/25001 pks (100%), 25001 changed\n", r.stderr)

	r = run(t, "registry", "remove", "--range", "2000000-2019999", "--database-url", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "removed 20000, 5001 influencers now tracked\n", r.stdout)
	assert.Equal(t, ""+
		"registry remove: 10000/20000 pks (50%), 10000 changed\n"+
		"registry remove: 20000/20000 pks (100%), 20000 changed\n", r.stderr)

	r = run(t, "registry", "remove", "--range", "2019000-2020999", "--database-url", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "removed 1000, 4001 influencers now tracked\n", r.stdout, "1000 of them were tracked")
	assert.Empty(t, r.stderr, "one batch: no progress")
}
