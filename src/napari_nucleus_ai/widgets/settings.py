"""Settings dock: the compute device every model user shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, Label

if TYPE_CHECKING:
    import napari


class SettingsWidget(Container):
    """Choose the compute device (auto / CUDA / MPS / CPU) and see which one is used."""

    def __init__(self, viewer: napari.viewer.Viewer | None = None):
        from napari_nucleus_ai.core.device import CHOICES
        from napari_nucleus_ai.core.settings import get_setting

        super().__init__(labels=True)
        self._viewer = viewer
        current = str(get_setting("device") or "auto")
        choices = list(CHOICES) + ([current] if current not in CHOICES else [])
        self.device = ComboBox(label="device", choices=choices, value=current)
        self.used = Label(label="in use")
        self.extend([self.device, self.used])
        self.device.changed.connect(self._on_device)
        self._show_used()

    def _on_device(self, value: str) -> None:
        from napari_nucleus_ai.core.settings import set_setting

        set_setting("device", value)
        self._show_used()

    def _show_used(self) -> None:
        from napari_nucleus_ai.core.device import describe_device, select_device
        from napari_nucleus_ai.core.errors import DeviceError

        try:
            self.used.value = describe_device(select_device(self.device.value))
        except DeviceError as e:
            self.used.value = f"unavailable: {e}"
