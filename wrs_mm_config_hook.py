"""Lets mmengine resolve ``wrs_mm::`` config paths in any interpreter, before
anything has imported ``wrs_mm``.

mmengine resolves ``_base_ = 'pkg::path'`` from a fixed table of packages
(``mmengine.config.utils.MODULE2PACKAGE``), before it processes a config's
``custom_imports``; so mmdet's and mmseg's own ``tools/train.py`` could not
load a config that inherits ``wrs_mm::...``. ``wrs_mm_config_hook.pth``, which
the wheel and ``setup.py develop`` install into site-packages, runs this
source at interpreter start, inlined in its one line (``setup.py`` writes
it: no import, so no search of ``sys.path``). It uses nothing but ``os`` and
``sys``, never torch or mmengine, and raises no error of its own: it puts one
finder at the front of ``sys.meta_path`` that waits for
``mmengine.config.utils`` to be imported, adds ``'wrs_mm': 'wrs_mm'`` to its
table right after the module has run (and makes mmengine's package lookup
name the fix when ``pkg_resources`` is missing), and removes itself.
``WRS_MM_CONFIG_HOOK=0`` in the environment turns it off. Start-up cost:
``benchmarks/bench_startup.py``.
"""
import os
import sys

TARGET = 'mmengine.config.utils'


def register(module) -> None:
    """Add wrs_mm to mmengine's table of packages with configs, and make its
    package lookup name the fix when setuptools lacks ``pkg_resources``."""
    table = getattr(module, 'MODULE2PACKAGE', None)
    if isinstance(table, dict):
        table.setdefault('wrs_mm', 'wrs_mm')
    # mmengine.config.config has bound these (it imports them before this
    # module), so they are wrapped where Config calls them
    config = sys.modules.get('mmengine.config.config')
    for name in ('is_installed', 'get_installed_path'):
        lookup = getattr(config, name, None)
        if callable(lookup) and not getattr(lookup, '_wrs_mm', False):
            setattr(config, name, _explain_missing_pkg_resources(lookup))


def _explain_missing_pkg_resources(lookup):
    """``lookup(package)`` raising a clear ``ModuleNotFoundError`` instead of
    mmengine's traceback when ``pkg_resources`` cannot be imported: mmengine
    0.10.x finds the packages of ``mmdet::`` / ``mmseg::`` / ``wrs_mm::``
    config paths with it, and setuptools >= 81 no longer ships it."""

    def package_lookup(package, *args, **kwargs):
        try:
            return lookup(package, *args, **kwargs)
        except ModuleNotFoundError as e:
            if e.name != 'pkg_resources':
                raise
            try:
                from importlib.metadata import version
                setuptools = 'setuptools ' + version('setuptools')
            except Exception:
                setuptools = 'no setuptools'
            raise ModuleNotFoundError(
                f'mmengine cannot load `{package}::` config paths: it finds '
                'installed packages with pkg_resources, which this '
                f'environment lacks ({setuptools}; setuptools 81 and newer '
                'no longer ship it). Install one that has it: '
                "pip install 'setuptools<81'",
                name='pkg_resources') from e

    package_lookup._wrs_mm = True
    return package_lookup


class _ConfigTableFinder:
    """Finds nothing itself: wraps the real loader of :data:`TARGET`."""

    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        try:
            _remove()
            for finder in sys.meta_path:
                spec = getattr(finder, 'find_spec', None)
                spec = spec and spec(name, path, target)
                if spec is not None and spec.loader is not None:
                    break
            else:
                return None
            real = spec.loader.exec_module

            def exec_module(module):
                real(module)
                try:
                    register(module)
                except Exception:  # never break mmengine's import
                    pass

            spec.loader.exec_module = exec_module
            return spec
        except Exception:  # fall back to the normal import, untouched
            return None


def _ours(finder) -> bool:
    # by name: site may run the .pth twice (a venv's lib64 -> lib link),
    # each time with a class of its own
    return type(finder).__name__ == '_ConfigTableFinder'


def _remove() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not _ours(f)]


def install() -> None:
    """Register now if mmengine's config module is loaded, else on its
    import."""
    try:
        if os.environ.get('WRS_MM_CONFIG_HOOK', '1') == '0':
            return
        if TARGET in sys.modules:
            register(sys.modules[TARGET])
        elif not any(_ours(f) for f in sys.meta_path):
            sys.meta_path.insert(0, _ConfigTableFinder())
    except Exception:
        pass


install()
