-- +goose Up

-- leased is how many calls the last reservation of a merchant took: one
-- slot, or a lease of several for one instance (store.ReserveMany), which the
-- instance spends by itself within a short window. The reservation returns
-- it, so that it need not read the row a second time.
ALTER TABLE merchant_pace ADD COLUMN leased integer NOT NULL DEFAULT 1;

-- +goose Down
ALTER TABLE merchant_pace DROP COLUMN leased;
