-- The public profile of each Supabase user, and the user's application role.
--
-- The role decides what staff may see (auditors read the audit log, admins manage roles), so
-- no user may set or change their own: a new profile is a homeowner or a contractor, as the
-- user signed up, and only an admin changes it afterwards.

create type public.app_role as enum (
  'homeowner', 'contractor', 'support', 'admin', 'auditor', 'system_admin'
);

create table public.users (
  id uuid primary key references auth.users (id) on delete cascade,
  email text,
  full_name text check (char_length(full_name) <= 200),
  phone text check (char_length(phone) <= 32),
  role public.app_role not null default 'homeowner',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.users is
'A Supabase user''s profile. `role` is the application role: only an admin may change it.';

create index users_role_idx on public.users (role);

create trigger keep_row_timestamps
before insert or update on public.users
for each row execute function private.keep_row_timestamps();

-- A phone number is no card number, but every other text here may not hold one.
create trigger refuse_card_data
before insert or update on public.users
for each row execute function private.refuse_card_data('phone');

/**
 * AFTER INSERT trigger on auth.users: creates the profile. The role requested at sign-up is
 * honoured only for homeowner and contractor; anything else makes a homeowner.
 */
create function private.create_user_profile() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.users (id, email, full_name, role)
  values (
    new.id,
    new.email,
    new.raw_user_meta_data ->> 'full_name',
    case
      when new.raw_user_meta_data ->> 'role' = 'contractor' then 'contractor'
      else 'homeowner'
    end::public.app_role
  )
  on conflict (id) do nothing;
  return new;
end
$$;

revoke all on function private.create_user_profile() from public;

create trigger create_user_profile
after insert on auth.users
for each row execute function private.create_user_profile();

/**
 * True when the requesting user's application role is one of `roles`. Security definer, so
 * that a policy can ask without granting the caller a read of other profiles.
 */
create function private.has_app_role(roles public.app_role[]) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.users as u
    where u.id = (select auth.uid()) and u.role = any(roles)
  )
$$;

revoke all on function private.has_app_role(public.app_role[]) from public;
grant execute on function private.has_app_role(public.app_role[])
to authenticated, admin, auditor, payment_service, escrow_service;
