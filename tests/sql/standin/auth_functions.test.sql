-- auth.uid(), auth.role(), auth.email() and auth.jwt() read the request settings with
-- Supabase's precedence: the legacy per-claim setting first, then the claims JSON.
begin;
select plan(14);

-- no request at all
select is(auth.uid(), null, 'auth.uid() is null outside a request');
select is(auth.jwt(), null, 'auth.jwt() is null outside a request');

-- the claims JSON alone, as PostgREST sets it
select set_config(
  'request.jwt.claims',
  '{"sub": "11111111-1111-4111-8111-111111111111", "role": "authenticated", "email": "a@example.test", "aal": "aal2"}',
  true
);
select is(auth.uid(), '11111111-1111-4111-8111-111111111111'::uuid, 'auth.uid() reads sub from request.jwt.claims');
select is(auth.role(), 'authenticated', 'auth.role() reads role from request.jwt.claims');
select is(auth.email(), 'a@example.test', 'auth.email() reads email from request.jwt.claims');
select is(auth.jwt() ->> 'aal', 'aal2', 'auth.jwt() returns the claims JSON');

-- the legacy per-claim settings win over the claims JSON
select set_config('request.jwt.claim.sub', '22222222-2222-4222-8222-222222222222', true);
select set_config('request.jwt.claim.role', 'service_role', true);
select set_config('request.jwt.claim.email', 'legacy@example.test', true);
select is(auth.uid(), '22222222-2222-4222-8222-222222222222'::uuid, 'auth.uid() prefers request.jwt.claim.sub');
select is(auth.role(), 'service_role', 'auth.role() prefers request.jwt.claim.role');
select is(auth.email(), 'legacy@example.test', 'auth.email() prefers request.jwt.claim.email');

-- auth.jwt() never reads the legacy sub
select is(
  auth.jwt() ->> 'sub', '11111111-1111-4111-8111-111111111111',
  'auth.jwt() ignores request.jwt.claim.sub'
);
select set_config('request.jwt.claim', '{"sub": "33333333-3333-4333-8333-333333333333"}', true);
select is(
  auth.jwt() ->> 'sub', '33333333-3333-4333-8333-333333333333',
  'auth.jwt() prefers the legacy whole-claim setting request.jwt.claim'
);

-- an empty legacy setting counts as absent
select set_config('request.jwt.claim.sub', '', true);
select is(auth.uid(), '11111111-1111-4111-8111-111111111111'::uuid, 'an empty request.jwt.claim.sub falls back to the claims');

-- all four are stable SQL functions, as on Supabase
select is(
  (
    select count(*)::int from pg_proc as p
    where p.pronamespace = 'auth'::regnamespace
      and p.proname in ('uid', 'role', 'email', 'jwt')
      and p.prolang = (select oid from pg_language where lanname = 'sql')
      and p.provolatile = 's'
  ),
  4, 'auth.uid, role, email and jwt are language sql stable'
);
select is(
  (select count(*)::int from pg_proc where pronamespace = 'auth'::regnamespace and proname in ('uid', 'role', 'email', 'jwt') and prosecdef),
  0, 'none of them is security definer'
);

select * from finish();
rollback;
