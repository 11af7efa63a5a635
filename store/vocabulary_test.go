package store_test

import (
	"context"
	"regexp"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store/storetest"
)

// TestCheckListsMatchDomain reads the CHECK constraints of a migrated
// database and asserts that each enumerated column allows exactly the domain's
// values: a status, step or method added on one side only fails here.
func TestCheckListsMatchDomain(t *testing.T) {
	t.Parallel()
	url := storetest.URL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })

	want := map[string][]string{
		"status": texts(reversald.Statuses),
		"step":   texts(reversald.Steps),
		"method": texts(reversald.Methods),
	}
	rows, err := conn.Query(ctx, `
		SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
		WHERE c.conrelid = 'attempts'::regclass AND c.contype = 'c'`)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	// CHECK ((status = ANY (ARRAY['pending'::text, ...])))
	colRe := regexp.MustCompile(`^CHECK \(\(\(?(\w+) = ANY`)
	valRe := regexp.MustCompile(`'([^']*)'::text`)
	seen := map[string]bool{}
	for _, def := range defs {
		m := colRe.FindStringSubmatch(def)
		if m == nil {
			continue
		}
		col := m[1]
		var got []string
		for _, v := range valRe.FindAllStringSubmatch(def, -1) {
			got = append(got, v[1])
		}
		w, ok := want[col]
		if !ok {
			continue
		}
		seen[col] = true
		slices.Sort(got)
		w = slices.Sorted(slices.Values(w))
		if !slices.Equal(got, w) {
			t.Errorf("attempts.%s CHECK allows %q; the domain has %q", col, got, w)
		}
	}
	for col := range want {
		if !seen[col] {
			t.Errorf("no CHECK list found for attempts.%s in %q", col, defs)
		}
	}
}

func texts[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
