// Package migrations holds the PostgreSQL schema of reversald as SQL files,
// embedded into the binary and applied by goose (see store.Migrate).
//
// Files are append-only once released: a change to the schema is a new file.
package migrations

import "embed"

// FS holds every migration, named NNNNN_description.sql in goose's format.
//
//go:embed *.sql
var FS embed.FS
