#!/usr/bin/python3
"""Seeds the test bed's directory through dc1's local sam.ldb (run by up.sh).

    seed.py SMB_CONF accounts      OU, groups, PSOs and the accounts of AD-FACTS.md;
                                   prints "need-pwexpired" when gpwexpired is missing
    seed.py SMB_CONF pwexpired     creates gpwexpired (run under faketime -f -5d, so
                                   its password was set five days ago)
    seed.py SMB_CONF bulk N DIR    writes LDIF chunks for the missing user0000..user(N-1)
                                   into DIR and prints how many it wrote, for ldbadd

Every step only adds what is missing or repairs what differs, so a re-run is cheap.
Passwords are set only when an account is created: resetting them would move
pwdLastSet and undo gpwexpired's expiry. Nothing here prints a password.

It writes to the sam.ldb of a running DC, like samba-tool does by default: ldb's
transactions lock the database across processes, and dc1's replication service
sends the changes to dc2 (up.sh also forces one replication afterwards).
"""

import base64
import os
import sys

import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

REALM = "aadds.example.test"
BASE_DN = "DC=aadds,DC=example,DC=test"
USERS_OU = "OU=AADDC Users," + BASE_DN
LOAD_OU = "OU=Load Users," + USERS_OU
PSO_CONTAINER = "CN=Password Settings Container,CN=System," + BASE_DN

UF_ACCOUNTDISABLE = 0x2
UF_NORMAL_ACCOUNT = 0x200
UF_DONT_EXPIRE_PASSWD = 0x10000
NEVER = "9223372036854775807"  # accountExpires: never
EXPIRED_AT = "132539328000000000"  # accountExpires: 2021-01-01T00:00:00Z
GLOBAL_SECURITY_GROUP = str(-2147483646)  # groupType 0x80000002

# Intervals in PSOs are negative counts of 100 ns.
MINUTE = 60 * 10**7
DAY = 24 * 60 * MINUTE

# The accounts table of AD-FACTS.md (and integration/testbed/testbed.go). "cn" is the
# unescaped RDN value; "expect" is the AD data code of a bind with the right password.
ACCOUNTS = [
    dict(login="jdoe", cn="John Doe", given="John", sn="Doe", password="Passw0rd!jdoe",
         attrs={"telephoneNumber": "+1 555 0101", "mobile": "+1 555 0201"}, groups=["PBX-Users"]),
    dict(login="asmith", cn="Alice Smith", given="Alice", sn="Smith", password="Passw0rd!asmith",
         attrs={"mobile": "+1 555 0202"}, groups=["PBX-Admins"]),
    dict(login="bjones", cn="Bob Jones", given="Bob", sn="Jones", password="Passw0rd!bjones",
         pso="pso-bjones"),
    dict(login="sobrien", cn="Seán O'Brien, Jr.", given="Seán", sn="O'Brien", password="Pässw0rd!€ü",
         groups=["PBX-Users"]),
    dict(login="cwhite", cn="Carol White", given="Carol", sn="White", password="Passw0rd!cwhite",
         disabled=True),
    dict(login="dmust", cn="Dan Must", given="Dan", sn="Must", password="Passw0rd!dmust",
         must_change=True),
    dict(login="eexpired", cn="Eve Expired", given="Eve", sn="Expired", password="Passw0rd!eexpired",
         expires=EXPIRED_AT),
    dict(login="gpwexpired", cn="Gus PwExpired", given="Gus", sn="PwExpired",
         password="Passw0rd!gpwexpired", pso="pso-gpwexpired", faketime=True),
    dict(login="hlocked", cn="Hal Locked", given="Hal", sn="Locked", password="Passw0rd!hlocked",
         pso="pso-hlocked"),
    dict(login="svc-pbx", cn="PBX Service", password="Svc!Passw0rd-pbx", no_mail=True,
         never_expires=True, attrs={"description": "ldapgate service account (the PBX's proxy user)"}),
]

# PBX-Admins is nested in PBX-Users (so it is made first).
GROUPS = [
    dict(name="PBX-Admins", description="PBX administrators (nested in PBX-Users)", members=[]),
    dict(name="PBX-Users", description="Users the PBX imports", members=["CN=PBX-Admins," + USERS_OU]),
]

# AD's "never" for an age (the most negative 64-bit interval). The test bed is kept for
# months on developers' machines: with the domain default of 42 days every seeded
# password would expire and turn each bind into 532.
NEVER = str(-0x8000000000000000)

# Fine-grained password policies, each applied to one user. Unlisted settings are
# copied from the domain, as `samba-tool domain passwordsettings pso create` does;
# the comments give that command's equivalent flags.
PSOS = [
    # --account-lockout-threshold=1000 --account-lockout-duration=10 --reset-account-lockout-after=10:
    # Samba counts badPwdCount only under a lockout threshold; this one never locks.
    dict(name="pso-bjones", precedence=10, applies_to="bjones",
         settings={"msDS-MaximumPasswordAge": NEVER,
                   "msDS-LockoutThreshold": "1000",
                   "msDS-LockoutDuration": str(-10 * MINUTE),
                   "msDS-LockoutObservationWindow": str(-10 * MINUTE)}),
    # --account-lockout-threshold=3 --account-lockout-duration=99999 --reset-account-lockout-after=99999:
    # three bad binds lock hlocked for about 69 days (up.sh re-locks it when needed).
    dict(name="pso-hlocked", precedence=11, applies_to="hlocked",
         settings={"msDS-MaximumPasswordAge": NEVER,
                   "msDS-LockoutThreshold": "3",
                   "msDS-LockoutDuration": str(-99999 * MINUTE),
                   "msDS-LockoutObservationWindow": str(-99999 * MINUTE)}),
    # --max-pwd-age=2 --min-pwd-age=0: 2 days, because 1 means "never" to Samba; with
    # a password set five days ago (faketime) the account's password has expired.
    dict(name="pso-gpwexpired", precedence=12, applies_to="gpwexpired",
         settings={"msDS-MaximumPasswordAge": str(-2 * DAY),
                   "msDS-MinimumPasswordAge": "0"}),
]


def escape_rdn(value):
    """Escapes an RDN value as RFC 4514 asks (the same as go-ldap's EscapeDN)."""
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;=' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def unicode_pwd(password):
    """AD takes a password as the UTF-16LE encoding of the quoted string."""
    return ('"%s"' % password).encode("utf-16-le")


def open_samdb(smb_conf):
    lp = LoadParm()
    lp.load(smb_conf)
    return SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)


def dn_key(db, dn):
    """A comparable form of a DN (ldb.Dn is not hashable)."""
    return ldb.Dn(db, str(dn)).get_casefold()


def find_one(db, base, expression, attrs):
    res = db.search(base=base, scope=ldb.SCOPE_SUBTREE, expression=expression, attrs=attrs)
    return res[0] if len(res) else None


def exists(db, dn):
    try:
        return len(db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["dn"])) == 1
    except ldb.LdbError as e:
        if e.args[0] == ldb.ERR_NO_SUCH_OBJECT:
            return False
        raise


def replace(db, dn, attr, value):
    m = ldb.Message()
    m.dn = ldb.Dn(db, str(dn))
    m[attr] = ldb.MessageElement(value, ldb.FLAG_MOD_REPLACE, attr)
    db.modify(m)


def add_values(db, dn, attr, values):
    m = ldb.Message()
    m.dn = ldb.Dn(db, str(dn))
    m[attr] = ldb.MessageElement(values, ldb.FLAG_MOD_ADD, attr)
    db.modify(m)


def say(msg):
    print("seed: " + msg, file=sys.stderr)


def ensure_ou(db, dn, description):
    if not exists(db, dn):
        db.add({"dn": dn, "objectClass": "organizationalUnit", "description": description})
        say("created " + dn)


def ensure_group(db, g):
    dn = "CN=%s,%s" % (g["name"], USERS_OU)
    if not exists(db, dn):
        db.add({"dn": dn, "objectClass": "group", "sAMAccountName": g["name"],
                "groupType": GLOBAL_SECURITY_GROUP, "description": g["description"]})
        say("created group " + g["name"])
    ensure_members(db, dn, g["members"])


def ensure_members(db, group_dn, member_dns):
    res = db.search(base=group_dn, scope=ldb.SCOPE_BASE, attrs=["member"])
    have = {dn_key(db, v) for v in res[0].get("member", [])}
    missing = [m for m in member_dns if dn_key(db, m) not in have]
    if missing:
        add_values(db, group_dn, "member", missing)
        say("added %d member(s) to %s" % (len(missing), group_dn))


def account_dn(a):
    return "CN=%s,%s" % (escape_rdn(a["cn"]), USERS_OU)


def create_account(db, a):
    dn = account_dn(a)
    uac = UF_NORMAL_ACCOUNT
    if a.get("disabled"):
        uac |= UF_ACCOUNTDISABLE
    if a.get("never_expires"):
        uac |= UF_DONT_EXPIRE_PASSWD
    entry = {
        "dn": dn,
        "objectClass": "user",
        "sAMAccountName": a["login"],
        "userPrincipalName": "%s@%s" % (a["login"], REALM),
        "displayName": a["cn"],
        "userAccountControl": str(uac),
        "accountExpires": a.get("expires", NEVER),
        "unicodePwd": unicode_pwd(a["password"]),
    }
    if a.get("given"):
        entry["givenName"] = a["given"]
        entry["sn"] = a["sn"]
    if not a.get("no_mail"):
        entry["mail"] = "%s@%s" % (a["login"], REALM)
    entry.update(a.get("attrs", {}))
    db.add(entry)
    if a.get("must_change"):
        replace(db, dn, "pwdLastSet", "0")
    say("created " + a["login"])


def ensure_account_state(db, a):
    """Repairs what a test or a person may have changed, except the password."""
    dn = account_dn(a)
    msg = db.search(base=dn, scope=ldb.SCOPE_BASE,
                    attrs=["userAccountControl", "accountExpires", "pwdLastSet"])[0]
    uac = int(str(msg["userAccountControl"][0]))
    want = uac & ~UF_ACCOUNTDISABLE
    if a.get("disabled"):
        want |= UF_ACCOUNTDISABLE
    if a.get("never_expires"):
        want |= UF_DONT_EXPIRE_PASSWD
    if want != uac:
        replace(db, dn, "userAccountControl", str(want))
        say("%s: userAccountControl %d -> %d" % (a["login"], uac, want))
    expires = a.get("expires", NEVER)
    have = str(msg["accountExpires"][0]) if "accountExpires" in msg else NEVER
    if have != expires and not (expires == NEVER and have == "0"):
        replace(db, dn, "accountExpires", expires)
        say("%s: accountExpires -> %s" % (a["login"], expires))
    if a.get("must_change") and str(msg["pwdLastSet"][0]) != "0":
        replace(db, dn, "pwdLastSet", "0")
        say("%s: pwdLastSet -> 0" % a["login"])
    for g in a.get("groups", []):
        ensure_members(db, "CN=%s,%s" % (g, USERS_OU), [dn])


def ensure_pso(db, p):
    dn = "CN=%s,%s" % (p["name"], PSO_CONTAINER)
    target = next(account_dn(a) for a in ACCOUNTS if a["login"] == p["applies_to"])
    if not exists(db, dn):
        d = db.search(base=BASE_DN, scope=ldb.SCOPE_BASE,
                      attrs=["pwdProperties", "pwdHistoryLength", "minPwdLength", "minPwdAge",
                             "maxPwdAge", "lockoutThreshold", "lockoutDuration",
                             "lockOutObservationWindow"])[0]
        props = int(str(d["pwdProperties"][0]))
        entry = {
            "dn": dn,
            "objectClass": "msDS-PasswordSettings",
            "msDS-PasswordSettingsPrecedence": str(p["precedence"]),
            "msDS-PasswordReversibleEncryptionEnabled": "TRUE" if props & 0x10 else "FALSE",
            "msDS-PasswordComplexityEnabled": "TRUE" if props & 0x1 else "FALSE",
            "msDS-PasswordHistoryLength": str(d["pwdHistoryLength"][0]),
            "msDS-MinimumPasswordLength": str(d["minPwdLength"][0]),
            "msDS-MinimumPasswordAge": str(d["minPwdAge"][0]),
            "msDS-MaximumPasswordAge": str(d["maxPwdAge"][0]),
            "msDS-LockoutThreshold": str(d["lockoutThreshold"][0]),
            "msDS-LockoutDuration": str(d["lockoutDuration"][0]),
            "msDS-LockoutObservationWindow": str(d["lockOutObservationWindow"][0]),
        }
        entry.update(p["settings"])
        db.add(entry)
        say("created PSO " + p["name"])
    else:
        cur = db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=list(p["settings"]))[0]
        for attr, value in p["settings"].items():
            if str(cur.get(attr, [""])[0]) != value:
                replace(db, dn, attr, value)
                say("set %s of PSO %s" % (attr, p["name"]))
    if not exists(db, target):
        return  # gpwexpired: applied by the pwexpired step once the user exists
    res = db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["msDS-PSOAppliesTo"])
    have = {dn_key(db, v) for v in res[0].get("msDS-PSOAppliesTo", [])}
    if dn_key(db, target) not in have:
        add_values(db, dn, "msDS-PSOAppliesTo", [target])
        say("applied PSO %s to %s" % (p["name"], p["applies_to"]))


def check_placement(db, a):
    """An account with the login must sit at the DN of the table, or not exist."""
    found = find_one(db, BASE_DN, "(sAMAccountName=%s)" % ldb.binary_encode(a["login"]), ["dn"])
    if found is None:
        return False
    if dn_key(db, found.dn) != dn_key(db, account_dn(a)):
        sys.exit("seed: %s exists at %s, expected %s: wipe the test bed (down.sh --wipe)"
                 % (a["login"], found.dn, account_dn(a)))
    return True


def ensure_domain_policy(db):
    """Seeded passwords never expire by age (gpwexpired's own PSO still expires it)."""
    d = db.search(base=BASE_DN, scope=ldb.SCOPE_BASE, attrs=["maxPwdAge"])[0]
    if str(d["maxPwdAge"][0]) != NEVER:
        replace(db, BASE_DN, "maxPwdAge", NEVER)
        say("domain maxPwdAge set to never")


def seed_accounts(db):
    ensure_domain_policy(db)
    ensure_ou(db, USERS_OU, "Every synced user, as in AADDS")
    ensure_ou(db, LOAD_OU, "Bulk users for load tests")
    for g in GROUPS:
        ensure_group(db, g)
    need_pwexpired = False
    for a in ACCOUNTS:
        if not check_placement(db, a):
            if a.get("faketime"):
                need_pwexpired = True
                continue
            create_account(db, a)
        ensure_account_state(db, a)
    for p in PSOS:
        ensure_pso(db, p)
    if need_pwexpired:
        print("need-pwexpired")


def seed_pwexpired(db):
    a = next(a for a in ACCOUNTS if a.get("faketime"))
    if not check_placement(db, a):
        create_account(db, a)
    ensure_account_state(db, a)
    ensure_pso(db, next(p for p in PSOS if p["applies_to"] == a["login"]))


def bulk_user(i):
    login = "user%04d" % i
    lines = [
        "dn: CN=%s,%s" % (login, LOAD_OU),
        "objectClass: user",
        "sAMAccountName: " + login,
        "userPrincipalName: %s@%s" % (login, REALM),
        "givenName: Load",
        "sn: User %04d" % i,
        "displayName: Load User %04d" % i,
        "mail: %s@%s" % (login, REALM),
        "userAccountControl: %d" % UF_NORMAL_ACCOUNT,
        "unicodePwd:: " + base64.b64encode(unicode_pwd("Passw0rd!%04d" % i)).decode(),
    ]
    # Some users with phone numbers and mobiles, so imports have data to map.
    if i % 2 == 0:
        lines.append("telephoneNumber: +1 556 %04d" % i)
    if i % 10 == 0:
        lines.append("mobile: +1 557 %04d" % i)
    return "\n".join(lines) + "\n\n"


def seed_bulk(db, n, out_dir, chunk=250):
    res = db.search(base=LOAD_OU, scope=ldb.SCOPE_ONELEVEL,
                    expression="(&(objectClass=user)(sAMAccountName=user*))", attrs=["sAMAccountName"])
    have = {str(m["sAMAccountName"][0]).lower() for m in res}
    missing = [i for i in range(n) if ("user%04d" % i) not in have]
    os.makedirs(out_dir, exist_ok=True)
    for k in range(0, len(missing), chunk):
        path = os.path.join(out_dir, "bulk-%06d.ldif" % k)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(bulk_user(i) for i in missing[k:k + chunk])
    print(len(missing))


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    db = open_samdb(argv[1])
    cmd = argv[2]
    if cmd == "accounts":
        seed_accounts(db)
    elif cmd == "pwexpired":
        seed_pwexpired(db)
    elif cmd == "bulk" and len(argv) == 5:
        seed_bulk(db, int(argv[3]), argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
