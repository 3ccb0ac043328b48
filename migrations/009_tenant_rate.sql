-- 009: a request rate per tenant.
--
-- Netskope's limit (4 requests/s) is per tenant token and shared with the
-- customer's other integrations (their SIEM connector, Cloud Exchange...).
-- tenant.requests_per_second, set with `tenant add/set --requests-per-second
-- R`, is this tenant's own rate; NULL keeps fetch.requests_per_second.

ALTER TABLE tenant ADD COLUMN requests_per_second REAL;
