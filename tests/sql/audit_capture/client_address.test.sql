-- The client's address, as the audit trail records it, is read from the right-hand end of
-- X-Forwarded-For: past the addresses our own proxies appended (private.settings,
-- trusted_proxy_hops), the next one is the client's, whatever the client wrote to its left.
-- The whole chain is kept in metadata, bounded from the right (the end nearest us), its hops
-- joined by " via ", with the number of hops the request brought.
begin;
select plan(15);

-- fixtures, as postgres
select tests.create_supabase_user('hana');

/** Remember the audit log's highest seq: what comes next lies above it. */
create function tests.mark() returns void
language sql
as $$
  select set_config(
    'fixture.mark', (select coalesce(max(l.seq), 0) from public.payment_audit_logs as l)::text,
    true
  )
$$;

/**
 * Mark, then rename hana in a request that brings `headers`; returns her audit row's address,
 * forwarded chain and number of hops.
 */
create function tests.recorded(headers jsonb) returns table (
  ip_address text, forwarded_for text, forwarded_hops int
)
language plpgsql
as $$
begin
  perform tests.mark();
  perform tests.authenticate_as('hana', headers => headers);
  update public.users set full_name = 'Hana ' || gen_random_uuid() where id = tests.get_supabase_uid('hana');
  perform set_config('role', 'none', true);
  return query
  select l.ip_address::text, l.metadata ->> 'forwarded_for', (l.metadata ->> 'forwarded_hops')::int
  from public.payment_audit_logs as l
  where l.seq > current_setting('fixture.mark')::bigint;
end
$$;

-- the attack of the issue: a spoofed first hop, 40 fake ones, and the address the gateway appended
select set_config(
  'fixture.chain',
  '198.51.100.7, ' || (select string_agg('192.0.2.' || n, ', ') from generate_series(1, 40) as n)
  || ', 203.0.113.50',
  true
);
select results_eq(
  $$select ip_address, forwarded_for, forwarded_hops
    from tests.recorded(jsonb_build_object('x-forwarded-for', current_setting('fixture.chain')))$$,
  $$values ('203.0.113.50', replace(current_setting('fixture.chain'), ', ', ' via '), 42)$$,
  'with 40 fake hops after a spoofed first one, the address recorded is the one the gateway '
  'appended, and the whole chain is kept'
);

-- a chain longer than the bound is kept from the right
select set_config(
  'fixture.chain',
  '198.51.100.7, ' || (select string_agg('192.0.2.' || (n % 250), ', ') from generate_series(1, 120) as n)
  || ', 203.0.113.51',
  true
);
select results_eq(
  $$select ip_address, length(forwarded_for) <= 1000, forwarded_for like '% via 203.0.113.51',
      forwarded_for like '198.51.100.7%', forwarded_hops
    from tests.recorded(jsonb_build_object('x-forwarded-for', current_setting('fixture.chain')))$$,
  $$values ('203.0.113.51', true, true, false, 122)$$,
  'a chain of 122 hops: the address is its last, and the chain is kept from the right, up to '
  '1000 characters of whole hops, the spoofed first hop dropped'
);
select ok(
  replace(current_setting('fixture.chain'), ', ', ' via ') like '%' || (
    select forwarded_for
    from tests.recorded(jsonb_build_object('x-forwarded-for', current_setting('fixture.chain')))
  ),
  'what is kept is the end of the chain as sent'
);

-- one trusted proxy hop: the client's address is the one before the last
update private.settings set value = '1' where key = 'trusted_proxy_hops';
select results_eq(
  $$select ip_address, forwarded_for
    from tests.recorded('{"x-forwarded-for": "6.6.6.6, 203.0.113.60, 172.70.1.2"}')$$,
  $$values ('203.0.113.60', '6.6.6.6 via 203.0.113.60 via 172.70.1.2')$$,
  'with one trusted proxy hop, the address is the one to the left of the proxy''s'
);
select results_eq(
  $$select ip_address from tests.recorded('{"x-forwarded-for": "203.0.113.61", "x-real-ip": "198.51.100.61"}')$$,
  $$values ('198.51.100.61')$$,
  'a chain shorter than the trusted hops holds no client address: X-Real-IP is read instead'
);
update private.settings set value = '0' where key = 'trusted_proxy_hops';

-- what the hop where the address should be holds, and the forms an address takes
select results_eq(
  $$select ip_address, forwarded_for
    from tests.recorded('{"x-forwarded-for": "203.0.113.70, unknown", "x-real-ip": "198.51.100.70"}')$$,
  $$values ('198.51.100.70', '203.0.113.70 via unknown')$$,
  'a last hop that is no address is not recorded as one, nor is the hop before it: X-Real-IP is read'
);
select results_eq(
  $$select ip_address, forwarded_for
    from tests.recorded('{"x-forwarded-for": "203.0.113.80, [2001:DB8::0:1]:443"}')$$,
  $$values ('2001:db8::1', '203.0.113.80 via [2001:DB8::0:1]:443')$$,
  'an address with brackets and a port is recorded as PostgreSQL writes it; the hops as sent'
);
select results_eq(
  $$select ip_address from tests.recorded('{"x-forwarded-for": "203.0.113.81:51234"}')$$,
  $$values ('203.0.113.81')$$,
  'a v4 address with a port is recorded without it'
);
select results_eq(
  $$select ip_address, forwarded_for, forwarded_hops
    from tests.recorded('{"x-forwarded-for": "203.0.113.90"}')$$,
  $$values ('203.0.113.90', null::text, null::int)$$,
  'one hop: the address, and no chain that would say no more'
);
select results_eq(
  $$select ip_address from tests.recorded('{}')$$,
  $$values (host(inet_client_addr()))$$,
  'no forwarding header: the connection''s own address (none over a unix socket)'
);

-- a refused call records the same address
select tests.mark();
select tests.authenticate_as(
  'hana', headers => '{"x-forwarded-for": "198.51.100.7, 192.0.2.1, 203.0.113.95"}'
);
select public.release_milestone_payment(gen_random_uuid(), 'key-1');
reset role;
select results_eq(
  $$select ip_address::text, success from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint$$,
  $$values ('203.0.113.95', false)$$,
  'a refused call''s audit row records the address from the right-hand end too'
);

-- the setting is a number of hops, 0 to 20
select throws_ok(
  $$update private.settings set value = '"one"' where key = 'trusted_proxy_hops'$$,
  '23514', null,
  'trusted_proxy_hops must be a number'
);
select throws_ok(
  $$update private.settings set value = '-1' where key = 'trusted_proxy_hops'$$,
  '23514', null,
  'trusted_proxy_hops cannot be negative'
);
select throws_ok(
  $$update private.settings set value = '21' where key = 'trusted_proxy_hops'$$,
  '23514', null,
  'trusted_proxy_hops is at most 20'
);
select is(
  (select value from private.settings where key = 'trusted_proxy_hops'),
  '0',
  'trusted_proxy_hops is 0 by default: the last address of the chain is the client''s'
);

select * from finish();
rollback;
