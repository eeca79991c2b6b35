"""The unified task instruction template of the M4SC paper (Section III-B).

A task instruction has four parts: Instruction (what to do), Input (image placeholder and/or
text), Output (the target) and Metadata (optional notes). The caption and VQA instruction texts
are the paper's; the paper gives none for text classification, so that default is written in the
same style (ours). The rendered prompt puts Metadata before Output so that the Output is the end
of the sequence the model generates:

    ### Instruction:
    <instruction>
    ### Input:
    <image>
    <input text>
    ### Metadata:          (only when metadata is given)
    <metadata>
    ### Output:
    <output>               (the target; the loss covers only this part)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "IMAGE_PLACEHOLDER",
    "TaskTemplate",
    "TEMPLATES",
    "CLASSIFY_LABELS",
    "template_for",
    "render_prompt",
    "render_example",
    "example_from_item",
]

IMAGE_PLACEHOLDER = "<image>"
CLASSIFY_LABELS = ("positive", "negative")


@dataclass(frozen=True)
class TaskTemplate:
    """One task's instruction template. ``input_text`` is the fixed input text of tasks without
    a per-sample text (captioning: "Image caption."); ``uses_image`` adds the image placeholder."""

    task: str
    instruction: str
    uses_image: bool
    input_text: str = ""
    metadata: str = ""


CAPTION_INSTRUCTION = (
    "Please carefully observe the provided image and identify the main elements, including the scene "
    "(e.g., indoor, outdoor, city, nature, etc.), key objects (e.g., animals, people, buildings, tools, etc.), "
    "and any actions or activities (e.g., running, eating, reading, etc.). Based on this information, generate "
    "a natural language description that covers the key details of the image. Ensure the description is fluent, "
    "grammatically correct, and avoids excessive speculation, only describing what can be clearly observed in the image."
)
VQA_INSTRUCTION = (
    "Please observe the provided image and read the question carefully to understand its specific requirements. "
    "Based on the content of the image, answer the question, ensuring that the answer is based on clearly observable "
    "information. If the question involves specific details (e.g., quantity, color, location), provide precise answers. "
    "If the question cannot be answered based on the image, respond with: 'Cannot obtain an answer from the image.' "
    "Finally, provide a concise and clear answer that fully satisfies the semantic requirement of the question."
)
# Not in the paper (it names the task but prints no instruction); written in the paper's style.
CLASSIFY_INSTRUCTION = (
    "Please read the provided text carefully and determine the overall sentiment it expresses. Base the decision "
    "only on what the text states. Answer with exactly one word: 'positive' or 'negative'."
)

TEMPLATES: dict[str, TaskTemplate] = {
    "caption": TaskTemplate("caption", CAPTION_INSTRUCTION, uses_image=True, input_text="Image caption."),
    "vqa": TaskTemplate("vqa", VQA_INSTRUCTION, uses_image=True),
    "classify": TaskTemplate("classify", CLASSIFY_INSTRUCTION, uses_image=False),
}


def template_for(task: str, instruction: str | None = None) -> TaskTemplate:
    """The template of ``task``; ``instruction`` overrides the default text (e.g. a short one)."""
    if task not in TEMPLATES:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TEMPLATES)}")
    template = TEMPLATES[task]
    return template if instruction is None else replace(template, instruction=instruction)


def render_prompt(task: str, input_text: str | None = None, metadata: str = "", instruction: str | None = None) -> str:
    """The prompt up to and including the ``### Output:`` header (ends with a newline)."""
    template = template_for(task, instruction)
    text = template.input_text if input_text is None else input_text
    lines = ["### Instruction:", template.instruction, "### Input:"]
    if template.uses_image:
        lines.append(IMAGE_PLACEHOLDER)
    if text:
        lines.append(text)
    notes = metadata or template.metadata
    if notes:
        lines += ["### Metadata:", notes]
    lines.append("### Output:")
    return "\n".join(lines) + "\n"


def render_example(task: str, input_text: str | None, output: str, metadata: str = "", instruction: str | None = None) -> tuple[str, str]:
    """``(prompt, target)``: the target is the Output text, the only part a loss should cover."""
    return render_prompt(task, input_text, metadata, instruction), output


def example_from_item(item: dict) -> dict:
    """Map a dataset item (see :mod:`simulator.data.loaders`) to ``{"task", "input_text",
    "output", "image"}`` for the collator. VQA: the question; caption: the first reference;
    classify: the text and its label."""
    task = item["task"]
    if task == "vqa":
        return {"task": task, "input_text": item["question"], "output": item.get("answer") or "", "image": item.get("image")}
    if task == "caption":
        return {"task": task, "input_text": None, "output": item["caption"], "image": item.get("image")}
    if task == "classify":
        return {"task": task, "input_text": item["text"], "output": item["label"], "image": None}
    raise ValueError(f"unknown task {task!r}")
