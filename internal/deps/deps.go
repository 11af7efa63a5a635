package deps

import (
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/pressly/goose/v3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/segmentio/kafka-go"
	_ "github.com/sethvargo/go-envconfig"
	_ "go.uber.org/goleak"
	_ "golang.org/x/time/rate"
)
