// Package pgtest gives tests a fresh, empty PostgreSQL database of their own.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding the server to create test databases on.
const EnvURL = "MOCKSTAGRAM_TEST_DATABASE_URL"

// DefaultURL is used when EnvURL is unset.
const DefaultURL = "postgres://root@127.0.0.1:5432/test?sslmode=disable"

// NewDatabase creates a uniquely named database on the server at
// $MOCKSTAGRAM_TEST_DATABASE_URL (default DefaultURL), returns its URL and
// drops it when the test ends. When the server is unreachable the test is
// skipped, or fails if $CI is set.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvURL)
	if admin == "" {
		admin = DefaultURL
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", EnvURL, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgtest: PostgreSQL unreachable at %s (set %s): %v", redacted(u), EnvURL, err)
		}
		t.Skipf("pgtest: PostgreSQL unreachable at %s (set %s to run this test): %v", redacted(u), EnvURL, err)
	}
	defer conn.Close(ctx)

	var buf [8]byte
	_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails
	name := "mockstagram_test_" + hex.EncodeToString(buf[:])
	// A database name cannot be a parameter; it is generated above, never
	// taken from input, and quoted as an identifier.
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})

	db := *u
	db.Path = "/" + name
	return db.String()
}

func redacted(u *url.URL) string { return u.Redacted() }
