"""hash() of the server's built-in types, which clients compare with their own: on the Python
server (/usr/bin/python3, a fixed-address executable) `object`, `int`, ... hash alike in client
and server. rpyc's own tests/test_magic.py test_hash_class relies on it."""

MAGIC = '''
class Meta(type):
    def __hash__(self):
        return 4321

Base = Meta("Base", (object,), {})

class Foo(Base):
    def __hash__(self):
        return 1234
'''


def test_builtin_types_hash_as_in_the_client(client):
    out = client.run("""
        import builtins
        conn = connect()
        b = conn.builtins
        for name in ("object", "type", "int", "str", "tuple", "dict", "BaseException"):
            here = getattr(builtins, name)
            there = getattr(b, name)
            assert b.hash(there) == hash(here), name
            assert hash(there) == hash(here), name
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_upstream_test_magic_hash_class(client, tmp_path):
    # A module importable on both sides, as in rpyc's own test runs.
    pkg = tmp_path / "hashmagic"
    pkg.mkdir()
    (pkg / "magic_types.py").write_text(MAGIC)
    out = client.run(f"""
        import sys
        sys.path.insert(0, {str(pkg)!r})
        import magic_types
        conn = connect()
        conn.modules.sys.path.insert(0, {str(pkg)!r})
        hesh = conn.builtins.hash
        mod = conn.modules["magic_types"]
        assert hash(mod.Base) == 4321 and hash(mod.Foo) == 4321
        assert hash(mod.Foo().__class__) == 4321
        basecl_ = mod.Foo().__class__.__mro__[1]
        object_ = mod.Foo().__class__.__mro__[2]
        assert hash(basecl_) == hesh(basecl_)
        assert hash(object_) == hesh(object_)
        assert hash(object_) == hesh(conn.builtins.object), (hash(object_), hesh(conn.builtins.object))
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")
