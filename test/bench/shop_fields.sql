-- The shop's own columns and rules, for test/bench/fields and
-- test/bench/profile add3_fields.sql: three columns (one default evaluated
-- per row, one constant) and two CHECK constraints.
ALTER TABLE orders ADD COLUMN coupon text,
                   ADD COLUMN delivery_date date DEFAULT current_date + 7,
                   ADD COLUMN channel text DEFAULT 'web',
                   ADD CONSTRAINT coupon_in_eur CHECK (coupon IS NULL OR currency = 'EUR'),
                   ADD CONSTRAINT delivery_after_order CHECK (delivery_date > created_at::date);
