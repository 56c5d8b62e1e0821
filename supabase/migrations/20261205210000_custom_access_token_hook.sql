-- Supabase's Custom Access Token Hook: the auth server calls public.custom_access_token_hook as
-- supabase_auth_admin when it issues an access token, and the hook puts the staff role of
-- public.users.role (admin, auditor) in the token's `role`, with the application role as
-- `user_role`. A banned user gets no staff role.

set local check_function_bodies = off;

/**
 * The claims of an access token as the auth server is about to issue it, with the user's
 * application role. The event is Supabase's: {user_id, claims, authentication_method}; the
 * answer is {claims}, or {error: {http_code, message}}.
 *   * `role`: `admin` for a user whose public.users.role is admin or system_admin, `auditor` for
 *     an auditor, `authenticated` for everyone else (support included: no database role of its
 *     own), and for staff the auth server has banned (auth.users.banned_until in the future) or
 *     whose profile is gone.
 *   * `user_role`: public.users.role, for clients to shape their screens (never for access:
 *     the database reads public.users itself); absent without a profile.
 *   * every other claim is kept as given (iss, aud, exp, iat, sub, aal, amr, session_id, ...).
 * Security definer: the auth server's role reads no application table.
 */
create or replace function public.custom_access_token_hook(event jsonb) returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  claims jsonb := event -> 'claims';
  subject uuid;
  profile_role public.app_role;
  banned boolean;
begin
  if jsonb_typeof(claims) is distinct from 'object'
    or coalesce(event ->> 'user_id', '')
    !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    return jsonb_build_object('error', jsonb_build_object(
      'http_code', 400,
      'message', 'the access token hook is called with a user_id and the claims to issue'
    ));
  end if;
  subject := (event ->> 'user_id')::uuid;
  select u.role into profile_role from public.users as u where u.id = subject;
  select coalesce(a.banned_until > now(), false) into banned
  from auth.users as a where a.id = subject;
  claims := claims - 'user_role';
  if profile_role is not null then
    claims := claims || jsonb_build_object('user_role', profile_role);
  end if;
  return jsonb_build_object('claims', claims || jsonb_build_object('role', case
    when coalesce(banned, false) then 'authenticated'
    when profile_role in ('admin', 'system_admin') then 'admin'
    when profile_role = 'auditor' then 'auditor'
    else 'authenticated'
  end));
end
$$;

grant usage on schema public to supabase_auth_admin;

grant execute on function public.custom_access_token_hook(jsonb) to supabase_auth_admin;

revoke execute on function public.custom_access_token_hook(jsonb) from service_role;
