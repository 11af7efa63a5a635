-- +goose Up

-- The QFPay app code that signed each gateway call (several merchant
-- credentials, issue 9). Never the key. '' for the calls made before this
-- migration, when one app code signed everything.
ALTER TABLE gateway_calls ADD COLUMN app_code text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE gateway_calls DROP COLUMN app_code;
