-- The shop's orders: what every version writes and reads on /api/orders.
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    item text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
